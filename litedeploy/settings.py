"""LiteLLM settings a host passes through without a template edit, the presets they start from, and
the checks that keep them from undoing what litedeploy manages (pure).

A host's `vars` may carry `litellm_settings`, `general_settings` and `router_settings` (copied into
config.yaml), `env` (plain variables for the env file) and `secret_env` (names of secrets that go
into the env file). `preset: production` starts a host from LiteLLM's production advice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .catalog import Deployment
from .envfile import ENV_NAME, env_names
from .errors import RenderError
from .shapes import Rule, check, flag, list_of, matching, text, whole
from .tls import ACME_KEYS, SECRET_KEYS, TLS_KEYS

# LiteLLM's production advice as of 1.110 (docs.litellm.ai/docs/proxy/prod, .../server_tuning,
# .../redis_requirements, October 2026), as vars the templates read; a host's own vars win, and its
# mappings (env, *_settings) are merged key by key over these.
PRESETS: Mapping[str, Mapping[str, Any]] = {
    "production": {
        # "Run one Uvicorn worker per pod and scale horizontally": more capacity is more gateways.
        # No max_requests_before_restart: it recycles a worker, and with one worker the proxy stops
        # serving when the limit is hit (litellm/proxy/proxy_cli.py, 1.110.2).
        "workers": 1,
        "memory_limit": "4g",
        # On a restart LiteLLM drains the requests in flight for GRACEFUL_SHUTDOWN_TIMEOUT (default
        # 30 s) before it exits; the grace period before Docker or systemd kill it covers the
        # request timeout, so a long stream is finished, not cut.
        "stop_grace_period": "630s",
        "log_max_size": "50m",
        "log_max_files": 5,
        # Zero-downtime changes: a second instance proven before a proxy switches to it (a restart
        # in place refuses requests while LiteLLM starts); litedeploy/frontdoor.py.
        "zero_downtime": True,
        "env": {"LITELLM_LOG": "ERROR", "LITELLM_MODE": "PRODUCTION", "GRACEFUL_SHUTDOWN_TIMEOUT": "600"},
        "litellm_settings": {"json_logs": True, "set_verbose": False, "request_timeout": 600},
    },
}
SETTINGS_SECTIONS = ("litellm_settings", "general_settings", "router_settings")
# Set by the templates from the host's other settings: a pass-through value would fight them.
MANAGED_GENERAL = ("master_key", "database_url")


# A host name as RFC 1123 allows it: labels of letters, digits and inner hyphens, 253 characters at most.
DNS_NAME = r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# Vars the compose block turns into LiteLLM's command line and the container's limits.
CONTAINER_VARS: Mapping[str, Rule] = {
    "workers": (whole, "a whole number of worker processes"),
    "max_requests_before_restart": (whole, "a whole number of requests"),
    "memory_limit": (matching(r"[1-9][0-9]*[bkmg]?"), "a size such as 4g or 512m"),
    "stop_grace_period": (matching(r"([0-9]+(ms|s|m|h))+"), "a duration such as 60s or 1m30s"),
    "log_max_size": (matching(r"[1-9][0-9]*[kmg]"), "a size such as 50m"),
    "log_max_files": (whole, "a whole number of files"),
    # vars.zero_downtime's proxy and the loopback ports of its two instances.
    "proxy_image": (matching(r"[a-z0-9][a-z0-9._:/@-]*"), "an image reference such as haproxy:3.2"),
    "instance_ports": (lambda value: list_of(lambda port: whole(port) and port < 65536)(value) and len(value) == 2
                       and value[0] != value[1], "two different ports, such as [4001, 4002]"),
    # The names the front door answers for (RFC 1123 host names, or IPv4 addresses).
    "server_names": (lambda value: bool(value) and list_of(matching(DNS_NAME))(value),
                     "a list of host names such as [llm.example.com]"),
    # HTTPS at the front door (litedeploy/tls.py): the secrets file's names of the certificate chain
    # and its key, or `acme` (a certificate from an ACME CA); where the team runs its own CA, the CA
    # certificate its clients trust.
    "tls": (lambda value: isinstance(value, dict) and set(value) <= set(TLS_KEYS) and text(value.get("ca_file", "-"))
            and (_acme_settings(value["acme"]) and not set(value) & set(SECRET_KEYS) if "acme" in value
                 else all(matching(ENV_NAME.pattern)(value.get(key)) for key in SECRET_KEYS)),
            "a mapping with certificate_pem and private_key_pem, the secrets file's names of the PEM "
            "certificate chain and its key, or acme: {email, directory, http_port, renew_before_days} (each "
            "optional), and optionally ca_file, the team's CA certificate"),
}


def _acme_settings(value: Any) -> bool:
    """vars.tls.acme: true, {} or a mapping of ACME_KEYS: an https:// directory URL, an email address,
    a port, a number of days below a 90-day certificate's life."""
    return value is None or value is True or isinstance(value, dict) and set(value) <= set(ACME_KEYS) \
        and matching(r"https://[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]+")(value.get("directory", "https://-")) \
        and matching(r"[^@\s]+@[^@\s]+")(value.get("email", "a@b")) \
        and whole(value.get("http_port", 80)) and 0 < value.get("http_port", 80) < 65536 \
        and type(value.get("renew_before_days", 30)) is int and 0 <= value.get("renew_before_days", 30) < 90


# Vars the templates test with `if`: a string there ("false") would switch the feature on.
FEATURE_VARS: Mapping[str, Rule] = {name: (flag, "true or false") for name in (
    "admin_ui", "database", "migrations", "store_prompts_in_spend_logs", "allow_mock_testing", "offline", "zero_downtime")}
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


def check_workers(variables: Mapping[str, Any], models: list[Deployment], where: str) -> None:
    """More than one worker shares nothing without Redis: "a limit of 100 requests per minute across 4
    workers really lets through 400, a revoked key stays usable on the workers that did not process
    the revocation" (docs.litellm.ai/docs/proxy/redis_requirements). Refused where the host has
    limits, budgets or keys (a database) to keep; recycling the only worker is refused too."""
    workers = variables.get("workers", 1)
    if "max_requests_before_restart" in variables and workers < 2:
        raise RenderError(f"{where}: vars.max_requests_before_restart recycles the only worker, and LiteLLM stops "
                          "serving when it is reached (safe with 2 workers or more); remove it")
    router = variables.get("router_settings") or {}
    if workers < 2 or variables.get("redis") or router.get("redis_host") or router.get("redis_url"):
        return
    limited = next((f"{m.name}'s {limit}" for m in models for limit in ("rpm", "tpm") if limit in m.params), None)
    kept = limited or next((f"litellm_settings.{key}" for key in (variables.get("litellm_settings") or {})
                            if "budget" in key), None) or ("keys and budgets (vars.database)"
                                                           if variables.get("database") else None)
    if kept:
        raise RenderError(f"{where}: vars.workers is {workers} without vars.redis: each worker would count "
                          f"{kept} on its own (a limit lets {workers} times through, a revoked key keeps working "
                          "on the others); set vars.redis, or workers: 1 and more gateways")


def grace_warnings(variables: Mapping[str, Any], default_grace: str = "10s") -> list[str]:
    """Where a restart would cut requests LiteLLM still allows: a grace period (default_grace, the
    runtime's `Runtime.default_grace`, where vars set none) shorter than the request timeout, or a drain
    (GRACEFUL_SHUTDOWN_TIMEOUT) that Docker or systemd kill before it ends."""
    variables = {"stop_grace_period": default_grace, **variables}
    grace = grace_seconds(variables, default_grace)
    timeout = (variables.get("litellm_settings") or {}).get("request_timeout")
    drain = (variables.get("env") or {}).get("GRACEFUL_SHUTDOWN_TIMEOUT")
    warnings = []
    if grace is not None and isinstance(timeout, (int, float)) and grace < timeout:
        warnings.append(f"vars.stop_grace_period ({variables['stop_grace_period']}) is shorter than "
                        f"litellm_settings.request_timeout ({timeout} s): a restart cuts the longest requests")
    if grace is not None and str(drain).isdigit() and grace <= int(str(drain)):
        warnings.append(f"vars.stop_grace_period ({variables['stop_grace_period']}) ends LiteLLM's drain "
                        f"(env GRACEFUL_SHUTDOWN_TIMEOUT {drain} s) before it can finish; make it longer")
    return warnings


def grace_seconds(variables: Mapping[str, Any], default_grace: str) -> float | None:
    """vars.stop_grace_period in seconds, DEFAULT_GRACE (the runtime's) where unset; None for a
    value that is no duration."""
    return _seconds(variables.get("stop_grace_period", default_grace))


def _seconds(duration: Any) -> float | None:
    """A compose duration (`1m30s`, `630s`) in seconds, or None."""
    parts = re.findall(r"([0-9]+)(ms|s|m|h)", str(duration)) if duration is not None else []
    return sum(int(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit] for n, unit in parts) if parts else None


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
