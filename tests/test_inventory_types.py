"""Any YAML value in any hosts.yaml field ends in a rendered set of files or a one-line error that
names the file and the host: never a traceback (generated values, checked through the whole pure
core: parse_inventory, then render_host)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import DEFAULT_IMAGE
from hypothesis import given
from hypothesis import strategies as st

from litedeploy import runtimes
from litedeploy.errors import DeployError
from litedeploy.inventory import SETTINGS, parse_inventory
from litedeploy.render import load_templates, render_host
from litedeploy.secrets import SecretValues

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = load_templates(REPO / "templates", REPO / "models.yaml")
BASE = yaml.safe_load((REPO / "hosts.yaml").read_text())
SECRETS = SecretValues({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE1", "AWS_SECRET_ACCESS_KEY": "secret/value+1",
                        "LITELLM_MASTER_KEY": "sk-master-123456", "LITELLM_SALT_KEY": "salt-123456",
                        "DATABASE_URL": "postgresql://u:p@db/litellm", "UI_USERNAME": "admin",
                        "UI_PASSWORD": "ui-password-1", "REDIS_PASSWORD": "redis-password-1"}, "secrets.enc.yaml")

SCALARS = (st.none() | st.booleans() | st.integers(-5, 70000) | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(st.sampled_from("ab/:$%{} .-_0\n#'\"~*"), max_size=10) | st.sampled_from(["", "0123", "1:30"]))
VALUES = st.recursive(SCALARS, lambda children: st.lists(children, max_size=3)
                      | st.dictionaries(st.text("abnmez_", max_size=6), children, max_size=3), max_leaves=6)
SETTING_NAMES = sorted(set(SETTINGS) - {"vars"})
VAR_NAMES = sorted(TEMPLATES.var_names)
MODEL_KEYS = ["name", "catalog", "model", "provider", "max_tokens", "rpm", "tpm", "timeout"]
CATALOG_KEYS = ["bedrock_id", "prefixes", "caching"]
# A catalog model, an Ollama one and a LiteLLM model string: every var has a model that reads it.
EVERY_KIND_OF_MODEL = {"ollama_backends": ["http://ollama.example:11434"],
                       "models": [{"name": "claude-sonnet-4"}, {"name": "phi", "provider": "ollama", "model": "phi3"},
                                  {"name": "gpt", "model": "openai/gpt-4o"}]}


@st.composite
def one_changed_field(draw) -> tuple[str, dict]:
    """fox's entry with one field (a setting, a var, a model's or a catalog entry's key) set to a
    generated value; the path says which."""
    entry = {"address": "fox.example", "vars": {**BASE["defaults"]["vars"], **EVERY_KIND_OF_MODEL}}
    kind = draw(st.sampled_from(["setting", "var", "model", "catalog"]))
    value = draw(VALUES)
    if kind == "setting":
        name = draw(st.sampled_from(SETTING_NAMES))
        entry[name] = value
    elif kind == "var":
        name = draw(st.sampled_from(VAR_NAMES))
        entry["vars"][name] = value
    elif kind == "model":
        name = draw(st.sampled_from(MODEL_KEYS))
        entry["vars"]["models"] = [*EVERY_KIND_OF_MODEL["models"][1:], {"name": "claude-sonnet-4", name: value}]
    else:
        name = draw(st.sampled_from(CATALOG_KEYS))
        catalog_entry = {"bedrock_id": "anthropic.claude-x-20250101-v1:0", "prefixes": ["us"], name: value}
        entry["vars"]["catalog"] = {"claude-x": catalog_entry}
        entry["vars"]["models"] = [{"name": "claude-x"}]
    return f"{kind} {name}", entry


def inventory_of(entry: dict, name: str = "fox") -> str:
    return yaml.safe_dump({"defaults": {k: v for k, v in BASE["defaults"].items() if k != "vars"},
                           "hosts": {name: entry}})


def render(text: str, name: str = "fox"):
    inventory = parse_inventory(text, Path("hosts.yaml"), DEFAULT_IMAGE)
    return render_host(TEMPLATES, inventory.host(name), SECRETS, runtimes.of(inventory.host(name)))


def assert_one_line_naming_the_host(error: DeployError, name: str = "fox") -> None:
    message = str(error)
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith(("hosts.yaml", "templates/", "models.yaml")), message
    assert re.search(rf"host '?{re.escape(name)}'?", message) or message.startswith("hosts.yaml: "), message


@given(one_changed_field())
def test_any_value_in_any_field_renders_or_is_one_error(changed):
    _, entry = changed
    try:
        render(inventory_of(entry))
    except DeployError as error:
        assert_one_line_naming_the_host(error)


@given(st.text(max_size=12))
def test_any_host_name_renders_or_is_one_error(name):
    try:
        render(inventory_of({"address": "fox.example"}, name), name)
    except DeployError as error:
        assert "\n" not in str(error) and str(error).startswith("hosts.yaml"), error


@pytest.mark.parametrize("field, value", [
    ("var catalog", "x"), ("var ollama_backends", 5), ("catalog prefixes", None), ("model model", 5),
])
def test_the_reported_shapes_are_one_error(field, value):
    kind, name = field.split()
    entry = {"address": "fox.example", "vars": {**BASE["defaults"]["vars"]}}
    if kind == "var":
        entry["vars"][name] = value
        entry["vars"]["models"] = [{"name": "phi", "provider": "ollama", "model": "phi3"}]
    elif kind == "model":
        entry["vars"]["models"] = [*EVERY_KIND_OF_MODEL["models"][1:], {"name": "claude-sonnet-4", name: value}]
    else:
        entry["vars"]["catalog"] = {"claude-x": {"bedrock_id": "anthropic.claude-x-20250101-v1:0", name: value}}
        entry["vars"]["models"] = [{"name": "claude-x"}]
    with pytest.raises(DeployError) as raised:
        render(inventory_of(entry))
    assert_one_line_naming_the_host(raised.value)


@pytest.mark.parametrize("value", [["docker"], {"a": 1}, None, 1, "podman", "SYSTEMD"])
def test_a_runtime_that_is_not_a_registered_name_is_one_error(value):
    """Found by hand: a list or a mapping is no key of the runtime registry (a dict), and asking
    was a TypeError."""
    with pytest.raises(DeployError, match="'runtime' must be one of docker, systemd") as raised:
        render(inventory_of({"address": "fox.example", "runtime": value}))
    assert_one_line_naming_the_host(raised.value)
