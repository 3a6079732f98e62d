"""Templates + host + secrets -> the text of every file we put on the host (pure, no I/O but reading
templates), and the checks that catch a bad render before it reaches the host."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import yaml

from . import tls
from .catalog import CATALOG_VARS, anthropic_aliases, load_catalog, resolve_models
from .enterprise import EnterpriseRules, check_licence, load_enterprise_rules
from .envfile import Slots, env_pairs, fill
from .errors import RenderError, parse_yaml
from .frontdoor import REQUEST_TIMEOUT, acme_frontend, topology
from .host import Host
from .masterkey import MASTER_KEY, MasterKeyRules, check_master_key, load_master_key_rules
from .plan import DesiredFiles
from .secrets import SecretValues
from .settings import SETTINGS_SECTIONS, SETTINGS_VARS, check_env_names, check_settings, check_workers, env_value
from .shared import check_redis, with_redis

if TYPE_CHECKING:
    from .runtimes.base import ProxyNetwork, Runtime

CONFIG_TEMPLATE = "config.yaml.j2"
RESPONDER_TEMPLATE = "acme-responder.cfg.j2"
ENV_TEMPLATE = "litellm.env.j2"


class _NamedUndefined(jinja2.StrictUndefined):
    """Says which secret or variable is missing instead of "'dict object' has no attribute"."""

    @property
    def _undefined_message(self) -> str:
        owner = self._undefined_obj
        if isinstance(owner, SecretValues):
            return f"secret {self._undefined_name!r} is missing from {owner.source}"
        if isinstance(owner, Mapping):
            return f"variable {self._undefined_name!r} is not defined for this host"
        return super()._undefined_message


# Besides the vars the model catalog reads, a host may set every `vars.NAME` a template mentions.
_VAR_REFERENCE = re.compile(r"""\bvars(?:\.(\w+)|\[["'](\w+)["']\]|\.get\(["'](\w+)["'])""")


@dataclass(frozen=True)
class Templates:
    """The project's templates and its model catalog: everything a render reads besides the host."""

    environment: jinja2.Environment
    catalog: Mapping[str, dict]
    master_key: MasterKeyRules
    enterprise: EnterpriseRules
    # Every var a host may set: a key outside this set is a typo, never silently ignored.
    var_names: frozenset[str] = CATALOG_VARS | SETTINGS_VARS | {"aws_auth", "redis", "migrations"}


def load_templates(templates_dir: Path, catalog_file: Path, facts_file: Path | None = None) -> Templates:
    """The templates, the model catalog and LiteLLM's facts (FACTS_FILE, by default litellm.yaml
    beside the catalog). Raises RenderError naming a file that cannot be read."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir)),
                                     undefined=_NamedUndefined, keep_trailing_newline=True,
                                     trim_blocks=True, lstrip_blocks=True, autoescape=False,
                                     bytecode_cache=_bytecode_cache())
    environment.filters["yaml_block"] = yaml_block
    environment.filters["quoted"] = quoted
    environment.filters["env_value"] = env_value
    environment.finalize = _into_slots
    mentioned = {name for template in sorted(Path(templates_dir).glob("*.j2"))
                 for match in _VAR_REFERENCE.finditer(template.read_text()) for name in match.groups() if name}
    facts = facts_file or catalog_file.with_name("litellm.yaml")
    return Templates(environment, load_catalog(catalog_file), load_master_key_rules(facts), load_enterprise_rules(facts),
                     CATALOG_VARS | SETTINGS_VARS | {"aws_auth", "redis", "migrations"} | mentioned)


def _bytecode_cache() -> jinja2.FileSystemBytecodeCache | None:
    """Compiled templates kept between runs (a third of a no-op's rendering was compiling them),
    in $XDG_CACHE_HOME/litedeploy/jinja (~/.cache by default), private to the user. Jinja keys
    each entry by the template's path and checks its source's hash, so an edited template is
    compiled anew. None (no cache) where that folder cannot be made, or where it is not the user's
    own and private: what it holds is loaded as code."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = root / "litedeploy" / "jinja"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = folder.stat()
    except OSError:
        return None
    if status.st_uid != os.getuid() or status.st_mode & 0o077:
        return None
    return jinja2.FileSystemBytecodeCache(str(folder))


@jinja2.pass_context
def _into_slots(context: jinja2.runtime.Context, value: Any) -> Any:
    """In the env template (its context holds `env_slots`) every {{ expression }} becomes a slot, so
    the env file's one writer sees each value whole; other templates print values as they are."""
    slots = context.get("env_slots")
    return slots.mark(value) if slots is not None else value


def quoted(value: Any) -> str:
    """A YAML double-quoted scalar (JSON's string syntax): a newline or colon in a value stays in
    the value instead of starting a key."""
    return json.dumps(str(value))


def yaml_block(value: Any, indent: int) -> str:
    """A mapping as block YAML on lines of its own, indented to sit under the key before it."""
    dumped = yaml.safe_dump(value, default_flow_style=False, sort_keys=False).rstrip("\n")
    return "".join(f"\n{' ' * indent}{line}" for line in dumped.splitlines())


AWS_AUTH = ("keys", "iam-role")


def render_host(templates: Templates, host: Host, secrets: SecretValues, runtime: Runtime,
                now: datetime.datetime | None = None, issued: tls.KeyPair | None = None) -> DesiredFiles:
    """Every file HOST should hold, as its RUNTIME and its topology (`frontdoor.topology`) word
    them; with NOW (a deploy's), a certificate (vars.tls) not valid then is refused too: without it
    (status, smoke, a restart) one that expired is still read. With vars.tls.acme the certificate is
    ISSUED (a deploy's, `acme_certificate.for_deploy`), or left as the host holds it. Raises
    RenderError naming the template, the hosts.yaml key or the secret at fault."""
    where = f"hosts.yaml (host {host.name})"
    unknown = sorted(set(host.vars) - templates.var_names)
    if unknown:
        raise RenderError(f"{where}: vars.{unknown[0]} is used by no template nor the model catalog (a typo?); "
                          f"known: {', '.join(sorted(templates.var_names))}")
    if host.vars.get("aws_auth", "keys") not in AWS_AUTH:
        raise RenderError(f"{where}: vars.aws_auth must be one of {', '.join(AWS_AUTH)}")
    check_settings(host.vars, where)
    check_redis(host.vars, where)
    if MASTER_KEY in secrets:
        check_master_key(secrets[MASTER_KEY], templates.master_key, secrets.source)
    models = resolve_models(host.vars, templates.catalog, where)
    check_workers(host.vars, models, where)
    if runtime.service.loopback_is_own(host):
        check_backends_reachable(host, where)
    router, litellm = with_redis(router_settings(host.vars, models, templates.catalog), host.vars.get("litellm_settings") or {},
                                 host.vars)
    layout = topology(host)
    context = {"host": host, "runtime": runtime, "vars": host.vars, "secrets": secrets, "models": models,
               "router_settings": router, "litellm_settings": litellm, "front_door": layout.door}
    env = _render_env(templates, context, host, secrets)
    check_licence({section: host.vars.get(section) for section in SETTINGS_SECTIONS}, env_pairs(env),
                  templates.enterprise, where)

    def rendered(template: str, **more: Any) -> str:
        return _render(templates, template, {**context, **more}, host)
    timeouts = {REQUEST_TIMEOUT: litellm.get("request_timeout"), "vars.router_settings.timeout": router.get("timeout"),
                **{f"vars.models {model.name}'s timeout": model.params["timeout"] for model in models
                   if "timeout" in model.params}}
    service, proxy, proxy_service = layout.render(runtime, host, rendered, timeouts)
    certificate = None
    if layout.door and layout.door.certificate_path and (issued or not layout.door.acme_port):
        roots, names = tls.trusted(host.vars["tls"].get("ca_file"), where), host.vars.get("server_names") or ()
        certificate, _ = tls.checked(issued, names, where, roots, now) if issued else \
            tls.bundle(secrets, host.vars["tls"], names, secrets.source, roots, now)
    files = DesiredFiles(config=_render(templates, CONFIG_TEMPLATE, context, host), env=env, service=service,
                         secret_names=tuple(name for name in env_pairs(env) if name in secrets), proxy=proxy,
                         proxy_service=proxy_service, certificate=certificate)
    check_config(files.config, host)
    check_env_names(files.env, files.config, where)
    runtime.service.check(files.service, host, layout.gateways(runtime, host))
    return files


def check_backends_reachable(host: Host, where: str) -> None:
    """Where a loopback address is the gateway's own (a container under bridge networking), an
    Ollama backend there is never reached. Raises RenderError naming the backend."""
    for index, url in enumerate(host.vars.get("ollama_backends") or []):
        name = urllib.parse.urlsplit(url).hostname or ""
        try:
            loopback = name == "localhost" or ipaddress.ip_address(name).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            raise RenderError(f"{where}: vars.ollama_backends[{index}] is {url}, the container itself under "
                              "network_mode: bridge; name an address the container reaches (the host's on the "
                              "Docker bridge, e.g. 172.17.0.1), or set network_mode: host")


def router_settings(variables: Mapping[str, Any], models: list, catalog: Mapping[str, dict]) -> dict[str, Any]:
    """vars.router_settings, with the ids Claude Code sends mapped to our models by family where the
    host asks for that (its own aliases win)."""
    settings = dict(variables.get("router_settings") or {})
    if variables.get("anthropic_model_ids"):
        known = {**catalog, **(variables.get("catalog") or {})}
        settings["model_group_alias"] = {**anthropic_aliases(models, known),
                                         **(settings.get("model_group_alias") or {})}
    return settings


def _render_env(templates: Templates, context: dict, host: Host, secrets: SecretValues) -> str:
    """The env file: the template's lines, every value written by envfile.fill."""
    slots = Slots()
    rendered = _render(templates, ENV_TEMPLATE, {**context, "env_slots": slots}, host)

    def origin(name: str) -> str:
        if name in (host.vars.get("env") or {}):
            return f"hosts.yaml (host {host.name}): vars.env.{name}"
        if name in secrets:
            return f"{secrets.source}: {name}"
        return f"templates/{ENV_TEMPLATE} (host {host.name}): the value of {name}"
    try:
        return fill(rendered, slots, origin, f"templates/{ENV_TEMPLATE} (host {host.name})")
    except ValueError as error:
        raise RenderError(str(error)) from None


def render_responder(templates: Templates, host: Host, network: ProxyNetwork, port: int) -> str:
    """The one-off HAProxy configuration that answers HOST's ACME CA on PORT while its door has no
    certificate yet (`acme_certificate`), the door's own frontend for it (haproxy-acme.cfg.j2)."""
    return _render(templates, RESPONDER_TEMPLATE, {"host": host, "network": network,
                                                   **acme_frontend(host, network, port)}, host)


def _render(templates: Templates, name: str, context: dict, host: Host) -> str:
    try:
        return templates.environment.get_template(name).render(context)
    except jinja2.TemplateNotFound:
        raise RenderError(f"templates/{name}: template not found") from None
    except jinja2.UndefinedError as exc:
        raise RenderError(f"templates/{name} (host {host.name}): {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"templates/{name}:{exc.lineno}: {exc.message}") from None


def check_config(text: str, host: Host) -> None:
    """What LiteLLM would refuse at start, caught before anything is sent."""
    where = f"templates/{CONFIG_TEMPLATE} (host {host.name})"
    config = parse_yaml(text, f"{where}: the rendered config.yaml", RenderError)
    models = config.get("model_list") if isinstance(config, dict) else None
    if not isinstance(models, list) or not models:
        raise RenderError(f"{where}: rendered config.yaml has no model_list")
    names = [m.get("model_name") for m in models if isinstance(m, dict)]
    # A name may repeat for load balancing, but each deployment under it must go somewhere else.
    entries = [(m.get("model_name"), repr(m.get("litellm_params"))) for m in models if isinstance(m, dict)]
    duplicated = {name for name, params in entries if entries.count((name, params)) > 1}
    if duplicated:
        raise RenderError(f"{where}: model_name {sorted(map(str, duplicated))[0]!r} appears twice with the same settings")
    for section in ("router_settings", "litellm_settings"):
        for rule in (config.get(section) or {}).get("fallbacks") or []:
            for source, targets in (rule.items() if isinstance(rule, dict) else []):
                for name in [source, *(targets if isinstance(targets, list) else [targets])]:
                    if name not in names:
                        raise RenderError(f"{where}: {section}.fallbacks names {name!r}, which is not a "
                                          "configured model_name")
    master_key = (config.get("general_settings") or {}).get("master_key")
    if not str(master_key or "").startswith("os.environ/"):
        raise RenderError(f"{where}: general_settings.master_key must be an os.environ/ reference, "
                          "so the key stays out of config.yaml")
