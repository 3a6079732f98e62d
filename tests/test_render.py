"""Templates + host + secrets -> config.yaml, env file and the compose block (pure): secrets only in
the env file, every bad render refused."""

import stat

import pytest
import yaml
from conftest import REPO, copy_templates

from litedeploy import runtimes
from litedeploy.errors import RenderError
from litedeploy.inventory import load_inventory
from litedeploy.render import load_templates, render_host
from litedeploy.secrets import SecretValues

SECRETS = SecretValues({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE1", "AWS_SECRET_ACCESS_KEY": "secret/value+1",
                        "LITELLM_MASTER_KEY": "sk-master-123456", "LITELLM_SALT_KEY": "salt-123456"},
                       "secrets.enc.yaml")


@pytest.fixture
def hosts(repo):
    return load_inventory(repo / "hosts.yaml")


@pytest.fixture
def templates(repo):
    return load_templates(repo / "templates", repo / "models.yaml")


@pytest.fixture
def own_templates(tmp_path):
    return copy_templates(tmp_path)


def test_fox_config_has_the_three_inference_profiles_and_no_secret(templates, hosts):
    files = render_host(templates, hosts.host("fox"), SECRETS, runtimes.of(hosts.host("fox")))
    config = yaml.safe_load(files.config)
    assert [(m["model_name"], m["litellm_params"]["model"], m["litellm_params"]["aws_region_name"])
            for m in config["model_list"]] == [
        ("claude-3-7-sonnet", "bedrock/us.anthropic.claude-3-7-sonnet-20250219-v1:0", "us-east-1"),
        ("claude-sonnet-4", "bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0", "us-east-1"),
        ("claude-opus-4", "bedrock/us.anthropic.claude-opus-4-20250514-v1:0", "us-east-1")]
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    for value in SECRETS.values():
        assert value not in files.config and value not in files.service


def test_fox_service_block_matches_the_source_design(templates, hosts):
    service = yaml.safe_load(render_host(templates, hosts.host("fox"), SECRETS, runtimes.of(hosts.host("fox"))).service)["litellm"]
    assert service["container_name"] == "litellm"
    assert service["image"] == "ghcr.io/berriai/litellm:v1.110.2"
    assert service["ports"] == ["4000:4000"]
    assert service["volumes"] == ["/srv/litellm/config.yaml:/app/config.yaml:ro"]
    assert service["env_file"] == ["/srv/litellm/litellm.env"]
    assert service["restart"] == "unless-stopped"
    assert service["command"] == ["--config", "/app/config.yaml", "--port", "4000"]
    assert service["healthcheck"]["test"][:2] == ["CMD", "python3"]
    assert "environment" not in service


def test_env_file_carries_every_secret_and_the_region(templates, hosts):
    env = render_host(templates, hosts.host("fox"), SECRETS, runtimes.of(hosts.host("fox"))).env
    pairs = dict(line.split("=", 1) for line in env.splitlines() if line and not line.startswith("#"))
    assert pairs == {**SECRETS, "AWS_REGION_NAME": "us-east-1"}


def test_lab_models_are_mocked_and_listen_on_loopback_only(templates, hosts):
    files = render_host(templates, hosts.host("lab"), SECRETS, runtimes.of(hosts.host("lab")))
    assert all("mock_response" in m["litellm_params"] for m in yaml.safe_load(files.config)["model_list"])
    service = yaml.safe_load(files.service)["litellm"]
    assert service["network_mode"] == "host" and "ports" not in service
    assert service["command"][service["command"].index("--host") + 1] == "127.0.0.1"


def test_a_missing_secret_is_named_with_its_file(templates, hosts):
    partial = SecretValues({k: v for k, v in SECRETS.items() if k != "LITELLM_SALT_KEY"}, "secrets.enc.yaml")
    with pytest.raises(RenderError, match=r"templates/litellm.env.j2 \(host fox\): secret 'LITELLM_SALT_KEY' "
                                          r"is missing from secrets.enc.yaml"):
        render_host(templates, hosts.host("fox"), partial, runtimes.of(hosts.host("fox")))


def test_an_undefined_variable_is_named(own_templates, hosts):
    (own_templates / "config.yaml.j2").write_text("region: {{ vars.aws_zone }}\n")
    with pytest.raises(RenderError, match="variable 'aws_zone' is not defined"):
        render_host(load_templates(own_templates, REPO / "models.yaml"), hosts.host("fox"), SECRETS, runtimes.of(hosts.host("fox")))


def test_a_config_with_the_master_key_inline_is_refused(own_templates, hosts):
    (own_templates / "config.yaml.j2").write_text(
        "model_list: [{model_name: a}]\ngeneral_settings: {master_key: '{{ secrets.LITELLM_MASTER_KEY }}'}\n")
    with pytest.raises(RenderError, match="master_key must be an os.environ/ reference"):
        render_host(load_templates(own_templates, REPO / "models.yaml"), hosts.host("fox"), SECRETS, runtimes.of(hosts.host("fox")))


@pytest.mark.parametrize("fallbacks, message", [
    ("[{claude-3-7-sonnet: [claude-sonnet-5]}]", "router_settings.fallbacks names 'claude-sonnet-5'"),
    ("[{claude-4: [claude-sonnet-4]}]", "router_settings.fallbacks names 'claude-4'"),
])
def test_fallbacks_must_name_configured_models(own_templates, hosts, fallbacks, message):
    with open(own_templates / "config.yaml.j2", "a") as config:
        config.write(f"router_settings:\n  fallbacks: {fallbacks}\n")
    with pytest.raises(RenderError, match=message):
        render_host(load_templates(own_templates, REPO / "models.yaml"), hosts.host("fox"), SECRETS, runtimes.of(hosts.host("fox")))


def test_fallbacks_between_configured_models_pass(own_templates, hosts):
    with open(own_templates / "config.yaml.j2", "a") as config:
        config.write("router_settings:\n  fallbacks: [{claude-3-7-sonnet: [claude-sonnet-4, claude-opus-4]}]\n")
    assert "fallbacks" in render_host(load_templates(own_templates, REPO / "models.yaml"), hosts.host("fox"), SECRETS, runtimes.of(hosts.host("fox"))).config


def test_fallbacks_and_the_mock_testing_switch_come_from_vars(templates, hosts):
    from dataclasses import replace
    fox = hosts.host("fox")
    plain = yaml.safe_load(render_host(templates, fox, SECRETS, runtimes.of(fox)).config)
    assert "router_settings" not in plain and set(plain["general_settings"]) == {"master_key"}
    opted = replace(fox, vars={**fox.vars, "fallbacks": {"claude-3-7-sonnet": ["claude-sonnet-4"]},
                               "allow_mock_testing": True})
    config = yaml.safe_load(render_host(templates, opted, SECRETS, runtimes.of(opted)).config)
    assert config["router_settings"]["fallbacks"] == [{"claude-3-7-sonnet": ["claude-sonnet-4"]}]
    assert config["general_settings"]["dangerously_allow_mock_testing_request_params"] is True


@pytest.mark.parametrize("setting", ["image", "container_name"])
def test_no_inventory_value_can_add_a_key_to_the_compose_block(templates, hosts, setting):
    sneaky = 'x:1"\n    privileged: true\n    x: "y'
    block = yaml.safe_load(render_host(templates, hosts.host("fox").with_settings(**{setting: sneaky}), SECRETS, runtimes.of(hosts.host("fox").with_settings(**{setting: sneaky}))).service)
    assert block["litellm"][setting] == sneaky
    assert "privileged" not in block["litellm"]


def test_a_var_no_template_uses_is_a_typo_and_an_error(templates, hosts, own_templates):
    from dataclasses import replace
    fox = hosts.host("fox")
    with pytest.raises(RenderError, match=r"hosts.yaml \(host fox\): vars.promt_caching is used by no template"):
        render_host(templates, replace(fox, vars={**fox.vars, "promt_caching": True}), SECRETS, runtimes.of(replace(fox, vars={**fox.vars, "promt_caching": True})))
    # A var of the project's own template is known once a template mentions it.
    (own_templates / "config.yaml.j2").write_text((own_templates / "config.yaml.j2").read_text()
                                                  + "# team: {{ vars.team | default('') }}\n")
    own = load_templates(own_templates, REPO / "models.yaml")
    assert "team:" in render_host(own, replace(fox, vars={**fox.vars, "team": "ml"}), SECRETS, runtimes.of(replace(fox, vars={**fox.vars, "team": "ml"}))).config


def test_compiled_templates_are_kept_privately_and_an_edited_one_is_compiled_anew(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    own = copy_templates(tmp_path)
    hosts = load_inventory(REPO / "hosts.yaml")
    first = render_host(load_templates(own, REPO / "models.yaml"), hosts.host("fox"), SECRETS, runtimes.of(hosts.host("fox")))
    cache = tmp_path / "cache/litedeploy/jinja"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700 and len(list(cache.iterdir())) >= 3
    assert render_host(load_templates(own, REPO / "models.yaml"), hosts.host("fox"), SECRETS, runtimes.of(hosts.host("fox"))) == first
    config = own / "config.yaml.j2"
    config.write_text(config.read_text() + "# edited\n")
    assert render_host(load_templates(own, REPO / "models.yaml"), hosts.host("fox"), SECRETS, runtimes.of(hosts.host("fox"))).config.endswith(
        "# edited\n")
    cache.chmod(0o777)  # another user could have written code there: not used
    assert load_templates(own, REPO / "models.yaml").environment.bytecode_cache is None
