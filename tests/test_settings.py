"""Settings passed through to LiteLLM, the production preset, and what they may not override."""

import re
from dataclasses import replace

import pytest
import yaml
from conftest import DEFAULT_IMAGE

from litedeploy import runtimes
from litedeploy.envfile import env_pairs
from litedeploy.errors import InventoryError, RenderError
from litedeploy.inventory import parse_inventory
from litedeploy.render import load_templates, render_host
from litedeploy.secrets import SecretValues
from litedeploy.settings import grace_warnings

SECRETS = SecretValues({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE1", "AWS_SECRET_ACCESS_KEY": "secret/value+1",
                        "LITELLM_MASTER_KEY": "sk-master-123456", "LITELLM_SALT_KEY": "salt-123456",
                        "LANGFUSE_SECRET_KEY": "lf-secret-1"}, "secrets.enc.yaml")


@pytest.fixture
def templates(repo):
    return load_templates(repo / "templates", repo / "models.yaml")


def fox_with(repo, **entry):
    """fox from the repo's inventory with more settings in its own entry."""
    data = yaml.safe_load((repo / "hosts.yaml").read_text())
    data["hosts"]["fox"].update(entry)
    return parse_inventory(yaml.safe_dump(data), repo / "hosts.yaml", DEFAULT_IMAGE).host("fox")


def rendered(templates, host):
    files = render_host(templates, host, SECRETS, runtimes.of(host))
    return yaml.safe_load(files.config), env_pairs(files.env), yaml.safe_load(files.service)["litellm"]


def test_each_settings_section_env_and_secret_env_pass_through(repo, templates):
    fox = fox_with(repo, vars={
        "litellm_settings": {"drop_params": True, "success_callback": ["langfuse"]},
        "general_settings": {"proxy_batch_write_at": 60},
        "router_settings": {"routing_strategy": "simple-shuffle", "model_group_alias": {"gpt-4o": "claude-sonnet-4"}},
        "env": {"LANGFUSE_HOST": "https://langfuse.example", "FEATURE": True},
        "secret_env": ["LANGFUSE_SECRET_KEY"]})
    config, env, _ = rendered(templates, fox)
    assert config["litellm_settings"] == {"drop_params": True, "success_callback": ["langfuse"]}
    assert config["general_settings"] == {"master_key": "os.environ/LITELLM_MASTER_KEY", "proxy_batch_write_at": 60}
    assert config["router_settings"]["model_group_alias"] == {"gpt-4o": "claude-sonnet-4"}
    assert (env["LANGFUSE_HOST"], env["FEATURE"], env["LANGFUSE_SECRET_KEY"]) == \
        ("https://langfuse.example", "true", "lf-secret-1")
    assert "LANGFUSE_SECRET_KEY" in render_host(templates, fox, SECRETS, runtimes.of(fox)).secret_names  # masked in diffs


def test_plain_values_are_quoted_by_the_same_writer_as_secrets(repo, templates):
    values = {"QUOTED": "it's", "DOLLAR": "$HOME", "SPACES": " a # b ", "NUMBER": 0.5}
    _, env, _ = rendered(templates, fox_with(repo, vars={"env": values}))
    assert {name: env[name] for name in values} == {**values, "NUMBER": "0.5"}


def test_the_production_preset_under_the_hosts_own_vars(repo, templates):
    fox = fox_with(repo, preset="production", vars={"env": {"LITELLM_LOG": "INFO"},
                                                    "litellm_settings": {"drop_params": True}})
    files = render_host(templates, fox, SECRETS, runtimes.of(fox))
    block = yaml.safe_load(files.service)
    config, env = yaml.safe_load(files.config), env_pairs(files.env)
    # Zero-downtime changes: the proxy and two instances, each shaped by the preset.
    assert set(block) == {"litellm-proxy", "litellm-blue", "litellm-green"}
    service = block["litellm-blue"]
    # One worker per container, not recycled (that would stop the only one).
    assert service["command"][-2:] == ["--num_workers", "1"]
    assert (service["mem_limit"], service["stop_grace_period"]) == ("4g", "630s")
    assert service["logging"] == {"driver": "json-file", "options": {"max-size": "50m", "max-file": "5"}}
    assert (env["LITELLM_LOG"], env["LITELLM_MODE"]) == ("INFO", "PRODUCTION")  # merged key by key
    assert env["GRACEFUL_SHUTDOWN_TIMEOUT"] == "600"
    assert config["litellm_settings"] == {"json_logs": True, "set_verbose": False, "request_timeout": 600,
                                          "drop_params": True}
    assert grace_warnings(fox.vars) == []  # the grace period covers the request timeout and the drain


@pytest.mark.parametrize("variables, named", [
    ({"workers": 4, "models": [{"name": "claude-sonnet-4", "rpm": 100}]}, "claude-sonnet-4's rpm"),
    ({"workers": 2, "models": [{"name": "claude-sonnet-4", "tpm": 1000}]}, "claude-sonnet-4's tpm"),
    ({"workers": 2, "litellm_settings": {"max_budget": 10}}, "litellm_settings.max_budget"),
    ({"workers": 2, "database": True}, "keys and budgets (vars.database)")])
def test_more_than_one_worker_with_limits_needs_redis(repo, templates, variables, named):
    secrets = SecretValues({**SECRETS, "DATABASE_URL": "postgresql://u:p@db/l"}, SECRETS.source)
    with pytest.raises(RenderError, match=rf"host fox\): vars.workers is {variables['workers']} without "
                                          rf"vars.redis: each worker would count {re.escape(named)} on its own"):
        render_host(templates, fox_with(repo, vars=variables), secrets, runtimes.of(fox_with(repo, vars=variables)))
    redis = {**variables, "redis": {"host": "redis.internal"}}
    render_host(templates, fox_with(repo, vars=redis), secrets, runtimes.of(fox_with(repo, vars=redis)))  # shared through Redis: fine
    own = {**variables, "router_settings": {"redis_host": "redis.internal"}}
    render_host(templates, fox_with(repo, vars=own), secrets, runtimes.of(fox_with(repo, vars=own)))  # the admin's own router Redis counts too
    render_host(templates, fox_with(repo, vars={**variables, "workers": 1}), secrets, runtimes.of(fox_with(repo, vars={**variables, "workers": 1})))


def test_more_workers_without_anything_to_share_need_no_redis(repo, templates):
    render_host(templates, fox_with(repo, vars={"workers": 3}), SECRETS, runtimes.of(fox_with(repo, vars={"workers": 3})))


def test_recycling_the_only_worker_is_refused(repo, templates):
    with pytest.raises(RenderError, match=r"vars.max_requests_before_restart recycles the only worker"):
        render_host(templates, fox_with(repo, vars={"max_requests_before_restart": 1000}), SECRETS, runtimes.of(fox_with(repo, vars={"max_requests_before_restart": 1000})))
    render_host(templates, fox_with(repo, vars={"workers": 2, "max_requests_before_restart": 1000}), SECRETS, runtimes.of(fox_with(repo, vars={"workers": 2, "max_requests_before_restart": 1000})))


def test_a_grace_period_shorter_than_the_request_timeout_or_the_drain_is_named():
    short = {"stop_grace_period": "1m", "litellm_settings": {"request_timeout": 600},
             "env": {"GRACEFUL_SHUTDOWN_TIMEOUT": "90"}}
    warnings = grace_warnings(short)
    assert "vars.stop_grace_period (1m) is shorter than litellm_settings.request_timeout (600 s)" in warnings[0]
    assert "GRACEFUL_SHUTDOWN_TIMEOUT 90 s" in warnings[1]
    assert grace_warnings({"stop_grace_period": "1m30s", "litellm_settings": {"request_timeout": 60}}) == []
    # Unset, the runtime's own wait: Docker kills after 10 s, systemd after 90 s.
    assert "vars.stop_grace_period (10s)" in grace_warnings({"env": {"GRACEFUL_SHUTDOWN_TIMEOUT": "30"}})[0]
    assert grace_warnings({"env": {"GRACEFUL_SHUTDOWN_TIMEOUT": "30"}}, runtimes.named("systemd").default_grace) == []


def test_offline_hosts_download_nothing(repo, templates):
    _, env, _ = rendered(templates, fox_with(repo, vars={"offline": True}))
    assert (env["LITELLM_OFFLINE_MODE"], env["LITELLM_LOCAL_MODEL_COST_MAP"]) == ("true", "true")
    _, env, _ = rendered(templates, fox_with(repo))
    assert "LITELLM_OFFLINE_MODE" not in env


def test_several_workers_get_time_to_start_before_uvicorn_kills_them(repo, templates):
    _, env, _ = rendered(templates, fox_with(repo, vars={"workers": 2}))
    assert env["TIMEOUT_WORKER_HEALTHCHECK"] == "60"
    _, env, _ = rendered(templates, fox_with(repo, vars={"workers": 2, "env": {"TIMEOUT_WORKER_HEALTHCHECK": 90}}))
    assert env["TIMEOUT_WORKER_HEALTHCHECK"] == "90"  # the admin's own, once
    _, env, _ = rendered(templates, fox_with(repo, vars={"workers": 1}))
    assert "TIMEOUT_WORKER_HEALTHCHECK" not in env


def test_without_a_preset_the_block_is_as_before(repo, templates):
    _, env, service = rendered(templates, fox_with(repo))
    assert "mem_limit" not in service and "logging" not in service and "LITELLM_MODE" not in env
    assert service["command"] == ["--config", "/app/config.yaml", "--port", "4000"]


def test_an_unknown_preset_names_the_host(repo):
    with pytest.raises(InventoryError, match="host 'fox': 'preset' must be one of production, not 'prod'"):
        fox_with(repo, preset="prod")


@pytest.mark.parametrize("variables, message", [
    ({"general_settings": {"master_key": "sk-1234"}}, "vars.general_settings.master_key is set by litedeploy"),
    ({"general_settings": {"database_url": "postgres://x"}}, "vars.general_settings.database_url is set by"),
    ({"litellm_settings": ["drop_params"]}, "vars.litellm_settings must be a mapping"),
    ({"router_settings": {"fallbacks": []}, "fallbacks": {}}, "fallbacks are set twice"),
    ({"env": {"BAD-NAME": "x"}}, "vars.env.BAD-NAME is not a variable name"),
    ({"env": {"LIST": [1]}}, "vars.env.LIST must be a string, number or boolean"),
    ({"env": {"X": "a\nINJECTED=1"}}, "hosts.yaml (host fox): vars.env.X holds a line break"),
    ({"env": {"X": "pw\u2028tail"}}, "hosts.yaml (host fox): vars.env.X holds a line break"),
    ({"env": {"X": "${HOME}"}}, "hosts.yaml (host fox): vars.env.X holds '${'"),
    ({"env": {"LITELLM_MASTER_KEY": "sk-1234"}}, "LITELLM_MASTER_KEY is set twice in the env file"),
    ({"secret_env": "LANGFUSE_SECRET_KEY"}, "vars.secret_env must be a list of secret names"),
    ({"secret_env": ["MISSING_ONE"]}, "secret 'MISSING_ONE' is missing from secrets.enc.yaml"),
    ({"general_settings": {"alerting_webhook": "os.environ/SLACK_URL"}},
     "config.yaml reads os.environ/SLACK_URL, which the env file does not set"),
    ({"workers": 0}, "vars.workers must be a whole number of worker processes, not 0"),
    ({"admin_ui": "false"}, "vars.admin_ui must be true or false, not 'false'"),
    ({"migrations": "no"}, "vars.migrations must be true or false, not 'no'"),
    ({"catalog": "x"}, "vars.catalog must be a mapping of model keys to catalog entries, not 'x'"),
    ({"ollama_backends": 5}, "vars.ollama_backends must be a list of Ollama URLs (http://host:11434), not 5"),
    ({"catalog": {"claude-x": {"bedrock_id": "anthropic.x", "prefixes": None}}},
     "vars.catalog.claude-x.prefixes must be a list of inference profile prefixes"),
    ({"models": [{"name": "claude-sonnet-4", "model": 5}]}, "vars.models[0].model must be a LiteLLM model string"),
    ({"memory_limit": "4 GB"}, "vars.memory_limit must be a size such as 4g or 512m"),
    ({"stop_grace_period": 60}, "vars.stop_grace_period must be a duration such as 60s"),
])
def test_a_bad_setting_is_one_error_naming_it(repo, templates, variables, message):
    fox = fox_with(repo)
    with pytest.raises(RenderError, match=re.escape(message)):
        render_host(templates, replace(fox, vars={**fox.vars, **variables}), SECRETS, runtimes.of(replace(fox, vars={**fox.vars, **variables})))


@pytest.mark.parametrize("url", ["http://127.0.0.1:11434", "http://localhost:11434", "http://[::1]:11434",
                                 "http://127.1.2.3:11434/"])
def test_a_loopback_ollama_backend_under_bridge_networking_is_named(repo, templates, url):
    fox = fox_with(repo, vars={"ollama_backends": ["http://ollama.example:11434", url],
                               "models": [{"name": "phi", "provider": "ollama", "model": "phi3"}]})
    with pytest.raises(RenderError, match=re.escape(f"vars.ollama_backends[1] is {url}, the container itself")):
        render_host(templates, fox, SECRETS, runtimes.of(fox))
    render_host(templates, fox.with_settings(network_mode="host"), SECRETS, runtimes.of(fox.with_settings(network_mode="host")))
