"""hosts.yaml -> Host records: defaults merged per host, every key checked, errors that name it.

The rules of a runtime's own settings are data its record declares (`host.RUNTIME_SETTINGS`):
the inventory applies them and imports no runtime."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import InventoryError, YAML11Number, parse_yaml
from .host import RUNTIME_SETTINGS, Host
from .settings import PRESETS, with_preset
from .shapes import Rule, absolute_path, ip_address, matching, one_of, port, text, yaml_text

# Every per-host setting and its default; a key not listed here is a typo and an error.
SETTINGS: Mapping[str, Any] = {
    "address": None,
    # docker: the gateway in a container of the host's compose file; systemd: a venv and a unit.
    "runtime": "docker",
    "ssh_user": "root",
    "ssh_port": 22,
    "ssh_key": None,
    "known_hosts": None,
    "host_key": "strict",
    "sudo": False,
    "compose_file": "/etc/compose.yml",
    "compose_project": None,
    "config_dir": "/srv/litellm",
    "image": None,  # litellm.yaml's releases.default_image, unless hosts.yaml names one
    "port": 4000,
    "bind": "0.0.0.0",
    "network_mode": "bridge",
    "container_name": "litellm",
    "service_name": "litellm",
    "marker": "# {mark} ANSIBLE MANAGED BLOCK litellm",
    "secrets_file": "secrets.enc.yaml",
    "age_key_file": None,
    "health_timeout": 180,
    # The systemd runtime: pinned requirements installed into a venv under venv_root (one per set),
    # run as service_user; from the host's package index, or from `wheels`, a local folder uploaded.
    "packages": ("litellm[proxy]==1.106.2", "prisma==0.15.0"),
    "venv_root": "/opt/litellm",
    "service_user": "litellm",
    "python": "python3",
    "wheels": None,
    "profile": None,
    "preset": None,
    "vars": {},
}
# Settings that name local files: relative paths are taken from the inventory's folder.
LOCAL_PATHS = ("ssh_key", "known_hosts", "secrets_file", "age_key_file", "wheels")
# strict: an unknown host key is refused; accept-new: recorded on first contact (OpenSSH's
# StrictHostKeyChecking=accept-new). A changed key is refused either way.
HOST_KEY_POLICIES = ("strict", "accept-new")
# An inventory name: it is part of file names (secrets.NAME.enc.yaml) and of host patterns (, : ! *).
HOST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: Mapping[str, Host]
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    groups: Mapping[str, list[str]] = field(default_factory=dict)

    def names(self, name: str) -> list[str]:
        """A group's hosts, or the one host named."""
        return list(self.groups[name]) if name in self.groups else [name]

    def select(self, pattern: str) -> list[str]:
        """Hosts a pattern names, in the order named, as Ansible's and Kamal's patterns do: terms
        separated by `,` or `:`, each a host, a group or a glob over both (`web*`); a term starting
        with `!` takes its hosts out (`prod:!fox2`). A name or glob that matches nothing is an error."""
        chosen: list[str] = []
        excluded: set[str] = set()
        for term in (t.strip() for t in re.split(r"[,:]", pattern)):
            if not term:
                continue
            negated, name = term.startswith("!"), term.lstrip("!")
            if any(c in name for c in "*?["):
                matched = [n for n in [*self.hosts, *self.groups] if fnmatch.fnmatchcase(n, name)]
                if not matched:
                    raise InventoryError(f"{self.path}: host pattern {name!r} matches no host or group")
                members = [member for n in matched for member in self.names(n)]
            else:
                if name not in self.hosts and name not in self.groups:
                    self.host(name)  # the unknown-host error, listing the known ones
                members = self.names(name)
            if negated:
                excluded.update(members)
            else:
                chosen += [member for member in dict.fromkeys(members) if member not in chosen]
        selected = [name for name in chosen if name not in excluded]
        if not selected:
            raise InventoryError(f"{self.path}: host pattern {pattern!r} leaves no host")
        return selected

    def host(self, name: str, profile: str | None = None) -> Host:
        """The host, with `profile` (or its own default profile) applied over its vars."""
        try:
            host = self.hosts[name]
        except KeyError:
            known = ", ".join(sorted(self.hosts)) or "none"
            raise InventoryError(f"{self.path}: unknown host {name!r} (known: {known})") from None
        return self.with_profile(host, profile or host.profile)

    def with_profile(self, host: Host, profile: str | None) -> Host:
        if profile is None:
            return host
        if profile not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise InventoryError(f"{self.path}: unknown profile {profile!r} (known: {known})")
        merged = {**host.vars, **self.profiles[profile]}
        _check_models(merged.get("models"), self.path, f"host {host.name!r} with profile {profile!r}")
        return replace(host, profile=profile, vars=merged)

    def host_at(self, address: str, port: int | None) -> Host:
        """The entry for `fab -H ADDRESS[:PORT]`, which names an address rather than an entry."""
        matches = [h for h in self.hosts.values()
                   if h.address == address and (port is None or h.ssh_port == port)]
        if len(matches) == 1:
            return matches[0]
        where = f"{address}:{port}" if port else address
        if not matches:
            raise InventoryError(f"{self.path}: no host has address {where}")
        names = ", ".join(sorted(h.name for h in matches))
        raise InventoryError(f"{self.path}: several hosts have address {where} ({names}); name one")


# What a host listens on: (its hosts.yaml setting, the address, the port) for each socket it binds.
Listening = Callable[[Host], Sequence[tuple[str, str, int]]]


def host_port(host: Host) -> Sequence[tuple[str, str, int]]:
    """The host's port on its bind (behind a front door it takes more: `frontdoor.listening`)."""
    return (("port", host.bind, host.port),)


def check_distinct(hosts: list[Host], path: Path, listening: Listening = host_port) -> None:
    """Hosts of one run at the same address share a machine (its engine, its files): two that
    would use the same container, unit, config folder or port (LISTENING: each one a host binds)
    are refused, as the second would replace what the first just deployed and both would report
    ok. Raises InventoryError naming both hosts and what they share."""
    for index, first in enumerate(hosts):
        for second in hosts[index + 1:]:
            shared = _shared(first, second, listening) if first.address == second.address else None
            if shared:
                what, value, setting = shared
                raise InventoryError(f"{path}: hosts {first.name!r} and {second.name!r} are both at {first.address} "
                                     f"with {what} {value!r}: deployed in one run, the second would replace the "
                                     f"first's; give one of them another {setting}")


def _shared(first: Host, second: Host, listening: Listening) -> tuple[str, Any, str] | None:
    """What two hosts on one machine would both take, or None: a name their runtime claims
    (its settings record's CLAIMS), their config_dir, or a port on a bind both use; as (what,
    its value, the setting to change)."""
    if type(first.runtime_settings) is type(second.runtime_settings):
        for what, scope in type(first.runtime_settings).CLAIMS:
            if _setting(first, what) == _setting(second, what) and (
                    scope is None or _setting(first, scope) == _setting(second, scope)):
                return what, _setting(first, what), what
    if first.config_dir == second.config_dir:
        return "config_dir", first.config_dir, "config_dir"
    for what, bind, number in listening(first):
        for other_what, other_bind, other_number in listening(second):
            if number == other_number and (bind == other_bind or bool({bind, other_bind} & {"0.0.0.0", "::"})):
                if what == other_what:
                    return what, number, what
                return f"{first.name!r}'s {what} and {second.name!r}'s {other_what}", number, f"{what} or {other_what}"
    return None


def _setting(host: Host, name: str) -> Any:
    """A setting by its hosts.yaml name, common or the runtime's own."""
    return getattr(host.runtime_settings, name) if name in _fields(type(host.runtime_settings)) else getattr(host, name)


def _fields(record: type) -> set[str]:
    return {item.name for item in fields(record)}


def load_inventory(path: Path, default_image: str | None = None) -> Inventory:
    """DEFAULT_IMAGE is what a docker host runs unless hosts.yaml names an image (litellm.yaml's
    default release); without it every docker host must name one."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read inventory ({exc.strerror})") from None
    return parse_inventory(text, path, default_image)


def parse_inventory(text: str, path: Path, default_image: str | None = None) -> Inventory:
    data = parse_yaml(text, str(path), InventoryError)
    if not isinstance(data, dict):
        raise InventoryError(f"{path}: expected a mapping with 'defaults' and 'hosts'")
    _refuse_yaml11_numbers(data, path, "")
    unknown = set(data) - {"defaults", "hosts", "profiles", "groups"}
    if unknown:
        raise InventoryError(f"{path}: unknown top-level key {sorted(unknown)[0]!r}")
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise InventoryError(f"{path}: 'profiles' must map profile names to vars")
    defaults = _entry(data.get("defaults") or {}, path, "defaults")
    if default_image is not None:
        defaults = {"image": default_image, **defaults}
    hosts = data.get("hosts")
    if not isinstance(hosts, dict) or not hosts:
        raise InventoryError(f"{path}: 'hosts' must map host names to settings")
    groups = data.get("groups") or {}
    if not isinstance(groups, dict) or not all(isinstance(m, list) for m in groups.values()):
        raise InventoryError(f"{path}: 'groups' must map group names to lists of hosts")
    for group, members in groups.items():
        if group in hosts:
            raise InventoryError(f"{path}: {group!r} is both a host and a group")
        for member in members:
            if member not in hosts:
                raise InventoryError(f"{path}: group {group!r} names unknown host {member!r}")
    for name in hosts:
        if not isinstance(name, str) or not HOST_NAME.fullmatch(name):
            raise InventoryError(f"{path}: host name {name!r} must be letters, digits, _, . and - (it names files and "
                                 "is matched by host patterns)")
    inventory = Inventory(path, {name: _host(name, entry, defaults, path) for name, entry in hosts.items()},
                          profiles, groups)
    for host in inventory.hosts.values():
        inventory.with_profile(host, host.profile)  # a default profile that does not exist is an error now
    return inventory


def _refuse_yaml11_numbers(value: Any, path: Path, where: str) -> None:
    """`port: 0123` is 83 and `1:30` is 90 to YAML 1.1 (PyYAML), 123 and text to every YAML 1.2
    reader: refused by key, so no setting silently deploys as another number."""
    if isinstance(value, YAML11Number):
        how = "without leading zeros" if value.kind == "octal" else "in seconds or another unit, without colons"
        raise InventoryError(f"{path}: {where}: {value.written} is read as {int(value)} (a YAML 1.1 {value.kind} "
                             f"number); write the number you mean {how}, or quote it to keep the text")
    if isinstance(value, dict):
        for key, child in value.items():
            _refuse_yaml11_numbers(child, path, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _refuse_yaml11_numbers(child, path, f"{where}[{index}]")


def _entry(entry: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise InventoryError(f"{path}: {where} must be a mapping of settings")
    for key in entry:
        if key not in SETTINGS:
            raise InventoryError(f"{path}: {where}: unknown key {key!r}")
    if "vars" in entry and not isinstance(entry["vars"], dict):
        raise InventoryError(f"{path}: {where}: 'vars' must be a mapping")
    return entry


def _host(name: str, entry: Any, defaults: dict[str, Any], path: Path) -> Host:
    where = f"host {name!r}"
    settings = {**SETTINGS, **defaults, **_entry(entry or {}, path, where)}
    settings["vars"] = {**defaults.get("vars", {}), **(entry or {}).get("vars", {})}
    if not settings["address"]:
        raise InventoryError(f"{path}: {where}: 'address' is required")
    for key in SETTINGS:  # in hosts.yaml's order: the first wrong key is the one named
        valid, meaning = _RULES.get(key, (None, ""))
        value = settings[key]
        if valid is None or (value is None and SETTINGS[key] is None and key != "address"):
            continue
        if not valid(value):
            raise InventoryError(f"{path}: {where}: {key!r} must be {meaning}, not {value!r}")
    settings["packages"] = tuple(settings["packages"])
    settings["vars"] = with_preset(settings["preset"], settings["vars"])
    _check_models(settings["vars"].get("models"), path, where)
    record = RUNTIME_SETTINGS[settings["runtime"]]
    for key, meaning in record.REQUIRED.items():
        if settings[key] is None:
            raise InventoryError(f"{path}: {where}: {key!r} is required ({meaning})")
    for key, (valid, meaning) in record.RESTRICTS.items():
        if not valid(settings[key]):
            raise InventoryError(f"{path}: {where}: {key!r} must be {meaning}, not {settings[key]!r}")
    settings["image"] = settings["image"] or ""  # a runtime without images (systemd: a venv) needs none
    for key in LOCAL_PATHS:
        if settings[key] is not None:
            settings[key] = str(path.parent / Path(str(settings[key])).expanduser())
    tls = settings["vars"].get("tls")
    if isinstance(tls, dict) and isinstance(tls.get("ca_file"), str) and tls["ca_file"]:  # a local file too
        settings["vars"]["tls"] = {**tls, "ca_file": str(path.parent / Path(tls["ca_file"]).expanduser())}
    own = _fields(record)
    return Host(name=name, runtime_settings=record(**{key: settings[key] for key in own}),
                **{key: value for key, value in settings.items() if key not in _RUNTIMES_OWN})


# Each common setting: a check and what it must be, said in the error. Docker's and compose's own
# rules for names, so a bad one fails here instead of halfway through a deploy; each runtime's own
# settings carry their rules in their record (`host.DockerSettings.RULES`, ...).
RULES: Mapping[str, Rule] = {
    "address": (matching(r"[^\s/]+"), "a host name or IP address"),
    "runtime": (one_of(tuple(RUNTIME_SETTINGS)), f"one of {', '.join(RUNTIME_SETTINGS)}"),
    "ssh_user": (matching(r"[A-Za-z_][A-Za-z0-9_.-]*\$?"), "a user name"),
    "ssh_port": (port, "a port number (1-65535)"),
    "ssh_key": (text, "a path"),
    "known_hosts": (text, "a path"),
    "host_key": (lambda value: value in HOST_KEY_POLICIES, f"one of {', '.join(HOST_KEY_POLICIES)}"),
    "sudo": (lambda value: isinstance(value, bool), "true or false"),
    "config_dir": (absolute_path(r"/[^\x00-\x1f:$%]*[^/\x00-\x1f:$%]"),
                   "an absolute path on the host (not /) without :, $ or % (compose reads them as volume syntax "
                   "and variables, systemd as specifiers), nor . or .. parts"),
    "port": (port, "a port number (1-65535)"),
    "bind": (ip_address, "an IP address (0.0.0.0 for all)"),
    "service_name": (lambda value: matching(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")(value) and yaml_text(value),
                     "a compose service name ([a-zA-Z0-9][a-zA-Z0-9_.-]*) that YAML reads as text, not a number"),
    "secrets_file": (text, "a path"),
    "age_key_file": (text, "a path"),
    "health_timeout": (lambda value: type(value) in (int, float) and value > 0, "a positive number of seconds"),
    "profile": (lambda value: value is None or isinstance(value, str), "a profile name"),
    "preset": (lambda value: isinstance(value, str) and value in PRESETS, f"one of {', '.join(PRESETS)}"),
}
# Every setting's rule, common or a runtime's own (each is checked on every host: a default of the
# inventory may set one for some of its hosts).
_RULES = {**RULES, **{key: rule for record in RUNTIME_SETTINGS.values() for key, rule in record.RULES.items()}}
# The settings of every runtime's own record: on a host they go into its runtime's record, or nowhere.
_RUNTIMES_OWN = frozenset(key for record in RUNTIME_SETTINGS.values() for key in _fields(record))


def _check_models(models: Any, path: Path, where: str) -> None:
    if not isinstance(models, list) or not models:
        raise InventoryError(f"{path}: {where}: vars.models must be a non-empty list")
    seen: set[str] = set()
    for index, model in enumerate(models):
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            raise InventoryError(f"{path}: {where}: vars.models[{index}] needs a 'name'")
        if model["name"] in seen:
            raise InventoryError(f"{path}: {where}: model name {model['name']!r} appears twice")
        seen.add(model["name"])
