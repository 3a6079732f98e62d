"""LiteLLM settings a host passes through without a template edit, the presets they start from, and
the checks that keep them from undoing what litedeploy manages (pure).

A host's `vars` may carry `litellm_settings`, `general_settings` and `router_settings` (copied into
config.yaml), `env` (plain variables for the env file) and `secret_env` (names of secrets that go
into the env file). `preset: production` starts a host from LiteLLM's production advice.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from .envfile import ENV_NAME, env_names
from .errors import RenderError
from .shapes import Rule, check, flag, matching, whole

# LiteLLM's "Best Practices for Production", as vars the templates read; a host's own vars win,
# and its mappings (env, *_settings) are merged key by key over these.
PRESETS: Mapping[str, Mapping[str, Any]] = {
    "production": {
        "workers": 4,  # uvicorn workers; each holds about 300 MB
        "max_requests_before_restart": 10000,  # recycles a worker before leaks add up
        "memory_limit": "4g",
        "stop_grace_period": "60s",  # lets requests in flight finish on a restart
        "log_max_size": "50m",
        "log_max_files": 5,
        "env": {"LITELLM_LOG": "ERROR", "LITELLM_MODE": "PRODUCTION"},
        "litellm_settings": {"json_logs": True, "set_verbose": False, "request_timeout": 600},
    },
}
SETTINGS_SECTIONS = ("litellm_settings", "general_settings", "router_settings")
# Set by the templates from the host's other settings: a pass-through value would fight them.
MANAGED_GENERAL = ("master_key", "database_url")


# Vars the compose block turns into LiteLLM's command line and the container's limits.
CONTAINER_VARS: Mapping[str, Rule] = {
    "workers": (whole, "a whole number of worker processes"),
    "max_requests_before_restart": (whole, "a whole number of requests"),
    "memory_limit": (matching(r"[1-9][0-9]*[bkmg]?"), "a size such as 4g or 512m"),
    "stop_grace_period": (matching(r"([0-9]+(ms|s|m|h))+"), "a duration such as 60s or 1m30s"),
    "log_max_size": (matching(r"[1-9][0-9]*[kmg]"), "a size such as 50m"),
    "log_max_files": (whole, "a whole number of files"),
}
# Vars the templates test with `if`: a string there ("false") would switch the feature on.
FEATURE_VARS: Mapping[str, Rule] = {name: (flag, "true or false") for name in (
    "admin_ui", "database", "migrations", "store_prompts_in_spend_logs", "allow_mock_testing")}
# Vars this module checks, whether or not a (customised) template reads them.
SETTINGS_VARS = frozenset({*SETTINGS_SECTIONS, "env", "secret_env", *CONTAINER_VARS, *FEATURE_VARS})
_ENVIRON_REFERENCE = re.compile(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)")


def with_preset(preset: str | None, variables: Mapping[str, Any]) -> dict[str, Any]:
    """The host's vars over the preset's (a name the inventory checked), mappings merged one level deep."""
    if preset is None:
        return dict(variables)
    merged = dict(PRESETS[preset])
    for key, value in variables.items():
        base = merged.get(key)
        merged[key] = {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
    return merged


def check_settings(variables: Mapping[str, Any], where: str) -> None:
    """Shapes first: a mapping of names, a list of secret names; then what must not be overridden."""
    check({**CONTAINER_VARS, **FEATURE_VARS}, variables, where)
    for section in (*SETTINGS_SECTIONS, "env"):
        value = variables.get(section, {})
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise RenderError(f"{where}: vars.{section} must be a mapping of names to values")
    for key in MANAGED_GENERAL:
        if key in variables.get("general_settings", {}):
            raise RenderError(f"{where}: vars.general_settings.{key} is set by litedeploy from the secrets file "
                              f"(os.environ/); remove it")
    if "fallbacks" in variables.get("router_settings", {}) and "fallbacks" in variables:
        raise RenderError(f"{where}: fallbacks are set twice, in vars.fallbacks and vars.router_settings; keep one")
    for name, value in variables.get("env", {}).items():
        if not ENV_NAME.fullmatch(name):
            raise RenderError(f"{where}: vars.env.{name} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)")
        if not isinstance(value, (str, int, float, bool)):
            raise RenderError(f"{where}: vars.env.{name} must be a string, number or boolean")
    names = variables.get("secret_env", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and ENV_NAME.fullmatch(n) for n in names):
        raise RenderError(f"{where}: vars.secret_env must be a list of secret names (variable names)")


def env_value(value: Any) -> str:
    """How a plain env value is written: booleans as true/false, as LiteLLM's own docs write them."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def check_env_names(env_text: str, config_text: str, where: str) -> None:
    """Each variable once in the env file, and each `os.environ/NAME` of the config set in it."""
    names = env_names(env_text)
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise RenderError(f"{where}: {twice[0]} is set twice in the env file (vars.env or vars.secret_env "
                          "repeats a variable the template sets)")
    for name in _ENVIRON_REFERENCE.findall(config_text):
        if name not in names:
            raise RenderError(f"{where}: config.yaml reads os.environ/{name}, which the env file does not set; "
                              "add it to vars.env or vars.secret_env")
