"""The model catalog (models.yaml): names to Bedrock and Ollama deployments, profiles, router settings,
and the ids Claude Code sends mapped to a host's models by family."""

from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conftest import DEFAULT_IMAGE

from litedeploy import runtimes
from litedeploy.catalog import CACHE_POINTS, anthropic_aliases, families_of, load_catalog, resolve_models
from litedeploy.errors import InventoryError, RenderError
from litedeploy.inventory import parse_inventory
from litedeploy.render import load_templates, render_host
from litedeploy.secrets import SecretValues


@pytest.fixture
def catalog(repo):
    return load_catalog(repo / "models.yaml")


def resolve(catalog, **variables):
    return resolve_models({"aws_region": "us-east-1", **variables}, catalog, "hosts.yaml (host x)")


def test_catalog_has_the_seed_models_and_the_newer_claude_profiles(catalog):
    assert {"claude-3-7-sonnet", "claude-sonnet-4", "claude-opus-4", "claude-opus-4-1", "claude-sonnet-4-5",
            "claude-haiku-4-5"} <= set(catalog)


@pytest.mark.parametrize("region, prefix", [("us-west-2", "us"), ("eu-central-1", "eu"), ("ap-northeast-1", "apac")])
def test_the_inference_profile_prefix_follows_the_region(catalog, region, prefix):
    [model] = resolve(catalog, aws_region=region, models=[{"name": "claude-sonnet-4"}])
    assert model.params == {"model": f"bedrock/{prefix}.anthropic.claude-sonnet-4-20250514-v1:0",
                            "aws_region_name": region}


def test_global_prefix_and_an_alias_with_limits(catalog):
    [model] = resolve(catalog, inference_prefix="global",
                      models=[{"name": "fast", "catalog": "claude-haiku-4-5", "max_tokens": 4096, "rpm": 60,
                               "tpm": 100000, "timeout": 120}])
    assert model.name == "fast"
    assert model.params == {"model": "bedrock/global.anthropic.claude-haiku-4-5-20251001-v1:0",
                            "aws_region_name": "us-east-1", "max_tokens": 4096, "rpm": 60, "tpm": 100000,
                            "timeout": 120}


def test_ollama_models_get_one_deployment_per_backend(catalog):
    models = resolve(catalog, ollama_backends=["http://a:11434", "http://b:11434"],
                     models=[{"name": "phi3-3.8b", "provider": "ollama", "model": "phi3:3.8b-mini-128k-instruct-q8_0"}])
    assert [(m.name, m.params["model"], m.params["api_base"]) for m in models] == [
        ("phi3-3.8b", "ollama_chat/phi3:3.8b-mini-128k-instruct-q8_0", "http://a:11434"),
        ("phi3-3.8b", "ollama_chat/phi3:3.8b-mini-128k-instruct-q8_0", "http://b:11434")]


def test_prompt_caching_injects_cache_points_where_the_model_supports_it(catalog):
    models = resolve(catalog, prompt_caching=True, models=[{"name": "claude-sonnet-4"}, {"name": "claude-3-5-sonnet-v2"}])
    assert models[0].params["cache_control_injection_points"] == CACHE_POINTS
    assert "cache_control_injection_points" not in models[1].params


@pytest.mark.parametrize("variables, message", [
    ({"models": [{"name": "claude-sonet-4"}]}, "unknown model 'claude-sonet-4': not in models.yaml"),
    ({"aws_region": "eu-west-1", "models": [{"name": "claude-opus-4"}]},
     "claude-opus-4 is not offered through the eu. inference profile .region eu-west-1.; it is offered as us."),
    ({"aws_region": "sa-east-1", "models": [{"name": "claude-sonnet-4"}]}, "no Bedrock inference profile prefix"),
    ({"prompt_caching": True, "models": [{"name": "claude-3-7-sonnet"}, {"name": "claude-3-5-sonnet-v2"}],
      "fallbacks": {"claude-3-7-sonnet": ["claude-3-5-sonnet-v2"]}},
     "fallback 'claude-3-5-sonnet-v2' of 'claude-3-7-sonnet' does not support it"),
    ({"models": [{"name": "local", "provider": "ollama", "model": "phi3"}]}, "needs 'model' and vars.ollama_backends"),
    ({"models": [{"name": "x", "modle": "y"}]}, r"vars.models\[0\] has unknown key 'modle'"),
])
def test_model_mistakes_are_one_line_errors_naming_host_and_key(catalog, variables, message):
    with pytest.raises(RenderError, match=message) as caught:
        resolve(catalog, **variables)
    assert str(caught.value).startswith("hosts.yaml (host x): ")


INVENTORY = """
defaults:
  vars: {aws_region: us-east-1, models: [{name: claude-sonnet-4}]}
profiles:
  prompt-caching: {prompt_caching: true}
  iam-role: {aws_auth: iam-role}
hosts:
  fox: {address: fox.example}
  lab: {address: 127.0.0.1, profile: iam-role}
"""


def test_profiles_apply_over_host_vars_and_a_host_can_default_to_one():
    inventory = parse_inventory(INVENTORY, Path("hosts.yaml"), DEFAULT_IMAGE)
    assert inventory.host("fox").profile is None
    caching = inventory.host("fox", "prompt-caching")
    assert caching.profile == "prompt-caching" and caching.vars["prompt_caching"] is True
    assert inventory.host("lab").vars["aws_auth"] == "iam-role"


def test_an_unknown_profile_is_named():
    inventory = parse_inventory(INVENTORY, Path("hosts.yaml"), DEFAULT_IMAGE)
    with pytest.raises(InventoryError, match=r"hosts.yaml: unknown profile 'cache' \(known: iam-role, prompt-caching\)"):
        inventory.host("fox", "cache")
    with pytest.raises(InventoryError, match="unknown profile 'nope'"):
        parse_inventory(INVENTORY.replace("profile: iam-role", "profile: nope"), Path("hosts.yaml"), DEFAULT_IMAGE)


def test_iam_role_hosts_get_no_aws_keys_and_need_none(repo):
    inventory = parse_inventory(INVENTORY, Path("hosts.yaml"), DEFAULT_IMAGE)
    templates = load_templates(repo / "templates", repo / "models.yaml")
    secrets = SecretValues({"LITELLM_MASTER_KEY": "sk-master-123456", "LITELLM_SALT_KEY": "salt-123456"}, "s.yaml")
    env = render_host(templates, inventory.host("lab"), secrets, runtimes.of(inventory.host("lab"))).env
    assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert "AWS_REGION_NAME=us-east-1" in env


def test_admin_ui_database_and_spend_logs_come_from_vars_and_secrets(repo):
    inventory = parse_inventory(INVENTORY.replace("iam-role: {aws_auth: iam-role}",
                                                  "iam-role: {aws_auth: iam-role}\n  ui: {admin_ui: true, database: true, "
                                                  "store_prompts_in_spend_logs: true, aws_auth: iam-role}"), Path("h.yaml"), DEFAULT_IMAGE)
    templates = load_templates(repo / "templates", repo / "models.yaml")
    secrets = SecretValues({"LITELLM_MASTER_KEY": "sk-master-123456", "LITELLM_SALT_KEY": "salt-123456",
                            "UI_USERNAME": "admin", "UI_PASSWORD": "pw-123456789",
                            "DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/litellm"}, "s.yaml")
    files = render_host(templates, inventory.host("fox", "ui"), secrets, runtimes.of(inventory.host("fox", "ui")))
    assert "UI_USERNAME=admin" in files.env and "DATABASE_URL=postgresql://" in files.env
    general = yaml.safe_load(files.config)["general_settings"]
    assert general == {"master_key": "os.environ/LITELLM_MASTER_KEY", "database_url": "os.environ/DATABASE_URL",
                       "store_prompts_in_spend_logs": True}
    without_ui = SecretValues({k: v for k, v in secrets.items() if k != "UI_PASSWORD"}, "s.yaml")
    with pytest.raises(RenderError, match="secret 'UI_PASSWORD' is missing from s.yaml"):
        render_host(templates, inventory.host("fox", "ui"), without_ui, runtimes.of(inventory.host("fox", "ui")))


def test_router_settings_pass_through_with_fallbacks(repo):
    inventory = parse_inventory(INVENTORY.replace("models: [{name: claude-sonnet-4}]",
                                                  "models: [{name: claude-sonnet-4}, {name: claude-3-7-sonnet}], "
                                                  "router_settings: {num_retries: 3, timeout: 600, allowed_fails: 2}, "
                                                  "fallbacks: {claude-sonnet-4: [claude-3-7-sonnet]}"), Path("h.yaml"), DEFAULT_IMAGE)
    templates = load_templates(repo / "templates", repo / "models.yaml")
    secrets = SecretValues({"AWS_ACCESS_KEY_ID": "AKIA12345678", "AWS_SECRET_ACCESS_KEY": "secret12345",
                            "LITELLM_MASTER_KEY": "sk-master-123456", "LITELLM_SALT_KEY": "salt-123456"}, "s.yaml")
    router = yaml.safe_load(render_host(templates, inventory.host("fox"), secrets, runtimes.of(inventory.host("fox"))).config)["router_settings"]
    assert router == {"num_retries": 3, "timeout": 600, "allowed_fails": 2,
                      "fallbacks": [{"claude-sonnet-4": ["claude-3-7-sonnet"]}]}


def test_the_ids_claude_code_sends_map_to_the_configured_models(catalog):
    models = resolve(catalog, models=[{"name": "claude-sonnet-4-5"}, {"name": "fast", "catalog": "claude-haiku-4-5"},
                                      {"name": "mine", "model": "bedrock/x"}])
    aliases = anthropic_aliases(models, {})
    assert aliases["claude-sonnet-4-5-20250929"] == "claude-sonnet-4-5"
    assert aliases["claude-haiku-4-5"] == "fast" and aliases["claude-haiku-4-5-20251001"] == "fast"
    assert "claude-sonnet-4-5" not in aliases  # already a configured name
    assert "mine" not in aliases.values()  # no catalog entry, no Anthropic id


def test_anthropic_model_ids_fill_model_group_alias_under_the_hosts_own(repo):
    inventory = parse_inventory((repo / "hosts.yaml").read_text(), repo / "hosts.yaml", DEFAULT_IMAGE)
    fox = inventory.host("fox")
    host = replace(fox, vars={**fox.vars, "anthropic_model_ids": True,
                              "router_settings": {"model_group_alias": {"claude-opus-4": "claude-sonnet-4"}}})
    secrets = SecretValues({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "LITELLM_MASTER_KEY": "sk-x",
                            "LITELLM_SALT_KEY": "s"}, "secrets.enc.yaml")
    config = yaml.safe_load(render_host(load_templates(repo / "templates", repo / "models.yaml"), host, secrets, runtimes.of(host)).config)
    aliases = config["router_settings"]["model_group_alias"]
    assert aliases["claude-sonnet-4-20250514"] == "claude-sonnet-4"
    assert aliases["claude-opus-4"] == "claude-sonnet-4"  # the host's own alias stays


def test_newer_claude_ids_map_to_the_hosts_model_of_their_family_hidden(catalog):
    """Claude Code 2.1 asks for claude-opus-5-5, claude-sonnet-5-5 and claude-haiku-5-5 by default:
    each goes to the host's first model of that family, not listed in /v1/models."""
    models = resolve(catalog, models=[{"name": "claude-sonnet-4-5"}, {"name": "fast", "catalog": "claude-haiku-4-5"},
                                      {"name": "claude-opus-4-5"}])
    aliases = anthropic_aliases(models, catalog)
    assert aliases["claude-opus-5-5"] == {"model": "claude-opus-4-5", "hidden": True}
    assert aliases["claude-sonnet-5-5"] == aliases["claude-sonnet-4-6"] == {"model": "claude-sonnet-4-5", "hidden": True}
    assert aliases["claude-haiku-5-5"] == {"model": "fast", "hidden": True}
    assert aliases["claude-3-7-sonnet-20250219"] == {"model": "claude-sonnet-4-5", "hidden": True}
    assert aliases["claude-haiku-4-5"] == "fast"  # a configured model's own id stays listed
    assert "claude-opus-4-5" not in aliases  # a configured name is never an alias
    only_sonnet = anthropic_aliases(resolve(catalog, models=[{"name": "claude-sonnet-4-5"}]), catalog)
    assert "claude-opus-5-5" not in only_sonnet  # no opus here: Claude Code gets LiteLLM's 400 naming it


@pytest.mark.parametrize("bedrock_id, anthropic_id", [
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet-20241022"),
    ("anthropic.claude-opus-4-6-v1", "claude-opus-4-6"), ("anthropic.claude-opus-5-5", "claude-opus-5-5")])
def test_bedrock_ids_of_both_eras_name_their_anthropic_id(catalog, bedrock_id, anthropic_id):
    deployment = resolve({**catalog, "x": {"bedrock_id": bedrock_id, "prefixes": ["us"], "caching": True}},
                         models=[{"name": "x"}])[0]
    assert deployment.anthropic_id == anthropic_id


def test_the_families_of_a_config_are_read_from_its_deployments_not_its_names(catalog):
    config = yaml.safe_dump({"model_list": [
        {"model_name": "big", "litellm_params": {"model": "bedrock/us.anthropic.claude-opus-4-5-20251101-v1:0"}},
        {"model_name": "fast", "litellm_params": {"model": "bedrock/global.anthropic.claude-haiku-5-5"}},
        {"model_name": "phi3", "litellm_params": {"model": "ollama_chat/phi3"}}]})
    assert families_of(config) == {"opus": "big", "haiku": "fast"}
