"""hosts.yaml -> Host records: defaults merged per host, every key checked, errors that name it."""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from . import runtimes
from .errors import InventoryError, YAML11Number, parse_yaml
from .settings import PRESETS, with_preset

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
# A pinned requirement: name[extras]==version.
_PINNED = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9,._-]+\])?==([A-Za-z0-9.+!-]+)")


def _pinned(requirement: str) -> tuple[str, str] | None:
    """(name, version) of a pinned requirement such as `litellm[proxy]==1.106.2`; None otherwise."""
    match = _PINNED.fullmatch(requirement)
    return (match[1], match[3]) if match else None
NETWORK_MODES = ("bridge", "host")
# strict: an unknown host key is refused; accept-new: recorded on first contact (OpenSSH's
# StrictHostKeyChecking=accept-new). A changed key is refused either way.
HOST_KEY_POLICIES = ("strict", "accept-new")
# An inventory name: it is part of file names (secrets.NAME.enc.yaml) and of host patterns (, : ! *).
HOST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Host:
    """One deploy target, with every default applied and local paths made absolute."""

    name: str
    address: str
    runtime: str
    ssh_user: str
    ssh_port: int
    ssh_key: str | None
    known_hosts: str | None
    host_key: str
    sudo: bool
    compose_file: str
    compose_project: str | None
    config_dir: str
    image: str
    port: int
    bind: str
    network_mode: str
    container_name: str
    service_name: str
    marker: str
    secrets_file: str
    age_key_file: str | None
    health_timeout: float
    packages: tuple[str, ...]
    venv_root: str
    service_user: str
    python: str
    wheels: str | None
    # A named set of vars from the inventory's `profiles`, applied over the host's own vars.
    profile: str | None = None
    # Built-in vars (settings.PRESETS) the host's own vars are applied over.
    preset: str | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)

    @property
    def config_path(self) -> str:
        return posixpath.join(self.config_dir, "config.yaml")

    @property
    def env_path(self) -> str:
        return posixpath.join(self.config_dir, "litellm.env")

    @property
    def backup_dir(self) -> str:
        return posixpath.join(self.config_dir, "backups")

    @property
    def litellm_version(self) -> str:
        return next(pin[1] for pin in map(_pinned, self.packages) if pin and pin[0] == "litellm")

    @property
    def venv_dir(self) -> str:
        """One venv per set of packages, named for the litellm it holds: a unit that names it runs
        exactly that, and a rollback's unit finds its venv still there."""
        digest = hashlib.sha256("\n".join(sorted(self.packages)).encode()).hexdigest()[:8]
        return posixpath.join(self.venv_root, f"litellm-{self.litellm_version}-{digest}")

    @property
    def local_address(self) -> str:
        """Where the gateway answers on the host itself (a wildcard bind answers on loopback)."""
        return "127.0.0.1" if self.bind in ("0.0.0.0", "::", "") else self.bind


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


def check_distinct(hosts: list[Host], path: Path) -> None:
    """Hosts of one run at the same address share a machine (its engine, its files): two that
    would use the same container, unit, config folder or port are refused, as the second would
    replace what the first just deployed and both would report ok. Raises InventoryError naming
    both hosts and what they share."""
    for index, first in enumerate(hosts):
        for second in hosts[index + 1:]:
            shared = _shared(first, second) if first.address == second.address else None
            if shared:
                what, value = shared
                raise InventoryError(f"{path}: hosts {first.name!r} and {second.name!r} are both at {first.address} "
                                     f"with {what} {value!r}: deployed in one run, the second would replace the "
                                     f"first's; give one of them another {what}")


def _shared(first: Host, second: Host) -> tuple[str, Any] | None:
    """What two hosts on one machine would both take, or None: a name their runtime claims
    (`Runtime.claims`), their config_dir, or their port on a bind both use."""
    theirs = {(runtimes.of(second), *claim) for claim in runtimes.of(second).claims(second)}
    claimed = next(((what, value) for what, value, scope in runtimes.of(first).claims(first)
                    if (runtimes.of(first), what, value, scope) in theirs), None)
    if claimed:
        return claimed
    binds = {first.bind, second.bind}
    clashes = [("config_dir", first.config_dir, first.config_dir == second.config_dir),
               ("port", first.port, first.port == second.port and (len(binds) == 1 or bool(binds & {"0.0.0.0", "::"})))]
    return next(((what, value) for what, value, clash in clashes if clash), None)


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
    for key, (valid, meaning) in RULES.items():
        value = settings[key]
        if value is None and SETTINGS[key] is None and key != "address":
            continue
        if not valid(value):
            raise InventoryError(f"{path}: {where}: {key!r} must be {meaning}, not {value!r}")
    settings["packages"] = tuple(settings["packages"])
    settings["vars"] = with_preset(settings["preset"], settings["vars"])
    _check_models(settings["vars"].get("models"), path, where)
    refusal = runtimes.named(settings["runtime"]).settings_error(settings)
    if refusal:
        raise InventoryError(f"{path}: {where}: {refusal}")
    settings["image"] = settings["image"] or ""  # a runtime without images (systemd: a venv) needs none
    for key in LOCAL_PATHS:
        if settings[key] is not None:
            settings[key] = str(path.parent / Path(str(settings[key])).expanduser())
    return Host(name=name, **settings)


def _text(pattern: str) -> Callable[[Any], bool]:
    compiled = re.compile(pattern)
    return lambda value: isinstance(value, str) and compiled.fullmatch(value) is not None


def _path(pattern: str) -> Callable[[Any], bool]:
    """An absolute path of PATTERN written as it is meant (posixpath.normpath leaves it as it is):
    compose v1 normalises /srv/x/./y in a volume, v2 does not, and .. could climb out of a folder."""
    matches = _text(pattern)
    return lambda value: matches(value) and posixpath.normpath(value) == value


def _port(value: Any) -> bool:
    return type(value) is int and 0 < value < 65536  # True is an int to Python, not a port


def _ip_address(value: Any) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return isinstance(value, str)


# A plain scalar YAML 1.2 (compose v2's parser) reads as a number: 1e3 is text to PyYAML, 1000 to compose-go.
_YAML12_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|0o[0-7]+|0x[0-9a-fA-F]+")


def _yaml_text(value: str) -> bool:
    """Whether both YAMLs compose reads (1.1 for v1, 1.2 for v2) take VALUE, unquoted, as this text."""
    return yaml.safe_load(value) == value and not _YAML12_NUMBER.fullmatch(value)


_ABSOLUTE_PATH = r"/[^\x00-\x1f]*"
# Each setting: a check and what it must be, said in the error. Docker's and compose's own rules
# for names, so a bad one fails here instead of halfway through a deploy.
RULES: Mapping[str, tuple[Callable[[Any], bool], str]] = {
    "address": (_text(r"[^\s/]+"), "a host name or IP address"),
    "runtime": (lambda value: isinstance(value, str) and value in runtimes.REGISTRY, f"one of {', '.join(runtimes.REGISTRY)}"),
    "ssh_user": (_text(r"[A-Za-z_][A-Za-z0-9_.-]*\$?"), "a user name"),
    "ssh_port": (_port, "a port number (1-65535)"),
    "ssh_key": (_text(r"[^\x00-\x1f]+"), "a path"),
    "known_hosts": (_text(r"[^\x00-\x1f]+"), "a path"),
    "host_key": (lambda value: value in HOST_KEY_POLICIES, f"one of {', '.join(HOST_KEY_POLICIES)}"),
    "sudo": (lambda value: isinstance(value, bool), "true or false"),
    "compose_file": (_path(_ABSOLUTE_PATH), "an absolute path on the host, without . or .. parts"),
    "compose_project": (_text(r"[a-z0-9][a-z0-9_-]*"), "a compose project name (a-z, 0-9, _ and -)"),
    "config_dir": (_path(r"/[^\x00-\x1f:$%]*[^/\x00-\x1f:$%]"),
                   "an absolute path on the host (not /) without :, $ or % (compose reads them as volume syntax "
                   "and variables, systemd as specifiers), nor . or .. parts"),
    "image": (_text(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*"), "an image reference (registry/name:tag or @digest)"),
    "port": (_port, "a port number (1-65535)"),
    "bind": (_ip_address, "an IP address (0.0.0.0 for all)"),
    "network_mode": (lambda value: value in NETWORK_MODES, f"one of {', '.join(NETWORK_MODES)}"),
    "container_name": (_text(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+"),
                       "a container name Docker accepts ([a-zA-Z0-9][a-zA-Z0-9_.-]+, two characters at least)"),
    "service_name": (lambda value: _text(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")(value) and _yaml_text(value),
                     "a compose service name ([a-zA-Z0-9][a-zA-Z0-9_.-]*) that YAML reads as text, not a number"),
    # Found again by its exact text: a trailing blank, which editors strip, would lose the block.
    "marker": (_text(r"#[^\n\r]*\{mark\}[^\n\r]*(?<![ \t])"),
               "one comment line (# ...) containing {mark}, without trailing blanks"),
    "secrets_file": (_text(r"[^\x00-\x1f]+"), "a path"),
    "age_key_file": (_text(r"[^\x00-\x1f]+"), "a path"),
    "health_timeout": (lambda value: type(value) in (int, float) and value > 0, "a positive number of seconds"),
    "packages": (lambda value: isinstance(value, (list, tuple)) and all(isinstance(p, str) and _pinned(p)
                                                                       for p in value)
                 and any((_pinned(p) or ("",))[0] == "litellm" for p in value),
                 "a list of pinned requirements (name==version) including litellm, e.g. litellm[proxy]==1.106.2"),
    "venv_root": (_path(r"/[^\x00-\x1f\s%$\"'\\]*[^/\x00-\x1f\s%$\"'\\]"),
                  "an absolute path on the host (not /) without blanks, quotes, backslashes, % or $ (the unit's "
                  "ExecStart names it), nor . or .. parts"),
    "service_user": (_text(r"[a-z_][a-z0-9_-]*"), "a system user name (a-z, 0-9, _ and -)"),
    "python": (_text(r"[A-Za-z0-9_./+-]+"), "a Python interpreter's name or path (python3)"),
    "wheels": (_text(r"[^\x00-\x1f]+"), "a path"),
    "profile": (lambda value: value is None or isinstance(value, str), "a profile name"),
    "preset": (lambda value: isinstance(value, str) and value in PRESETS, f"one of {', '.join(PRESETS)}"),
}


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
