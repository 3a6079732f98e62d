"""What each client needs, as lines to paste."""

import shlex

import pytest

from litedeploy.clients import CLIENTS, client_lines

MODELS = ["claude-3-7-sonnet", "claude-sonnet-4", "claude-haiku-4-5"]


def exports(lines):
    return dict(shlex.split(line.removeprefix("export "), comments=True)[0].split("=", 1)
                for line in lines if line.startswith("export "))


def test_claude_code_gets_the_messages_base_url_the_default_model_and_one_model_a_family():
    lines = client_lines("claude-code", "http://fox:4000", "sk-x", MODELS)
    assert exports(lines) == {
        "ANTHROPIC_BASE_URL": "http://fox:4000", "ANTHROPIC_AUTH_TOKEN": "sk-x",
        "ANTHROPIC_MODEL": "claude-3-7-sonnet", "ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-3-7-sonnet",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-haiku-4-5", "ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4-5"}
    assert "# no opus model here: --model opus gets an error" in lines


def test_openai_sdks_get_the_v1_base_url():
    assert exports(client_lines("openai", "http://fox:4000", "sk-x", MODELS)) == {
        "OPENAI_BASE_URL": "http://fox:4000/v1", "OPENAI_API_KEY": "sk-x"}


def test_cline_gets_its_litellm_provider_fields():
    lines = client_lines("cline", "http://fox:4000", "sk-x", MODELS)
    assert "Base URL:  http://fox:4000" in lines and "Model ID:  claude-3-7-sonnet" in lines


@pytest.mark.parametrize("client", CLIENTS)
def test_a_key_with_shell_characters_is_quoted(client):
    lines = client_lines(client, "http://fox:4000", "sk-a'b $c", MODELS)
    if client != "cline":
        assert "sk-a'b $c" in exports(lines).values()


def test_families_come_from_the_models_behind_the_names():
    lines = client_lines("claude-code", "http://fox:4000", "sk-x", ["big", "fast"], {"opus": "big", "haiku": "fast"})
    assert exports(lines)["ANTHROPIC_DEFAULT_OPUS_MODEL"] == "big"
    assert exports(lines)["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "fast" and "# no sonnet model here" in " ".join(lines)


def test_a_team_ca_is_trusted_the_way_each_client_reads_one():
    ca = "/home/ann/team ca.pem"
    assert exports(client_lines("claude-code", "https://llm:443", "sk-x", MODELS, ca_file=ca))["NODE_EXTRA_CA_CERTS"] == ca
    assert exports(client_lines("openai", "https://llm:443", "sk-x", MODELS, ca_file=ca))["SSL_CERT_FILE"] == ca
    assert "# start VS Code with NODE_EXTRA_CA_CERTS='/home/ann/team ca.pem' (the team's CA)" in \
        client_lines("cline", "https://llm:443", "sk-x", MODELS, ca_file=ca)
    for client in CLIENTS:  # a public CA needs nothing
        assert not any("CERT" in line for line in client_lines(client, "https://llm:443", "sk-x", MODELS))
