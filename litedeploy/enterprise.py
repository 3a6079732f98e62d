"""LiteLLM settings that need its Enterprise licence (pure once loaded): LiteLLM exits at start
where one is set without the licence, so the new gateway would crash-loop; a deploy names the
setting before anything is sent. The list is data (litellm.yaml's `enterprise`, with its source),
so a change of LiteLLM's is an edit there."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RenderError, parse_yaml


@dataclass(frozen=True)
class EnterpriseRules:
    """The variable that carries the licence, and the settings LiteLLM refuses to start with
    without it, by section of config.yaml (general_settings: allowed_ips, ...)."""

    licence_env: str
    settings: Mapping[str, frozenset[str]]


def load_enterprise_rules(path: Path) -> EnterpriseRules:
    """litellm.yaml's `enterprise` section. Raises RenderError naming the file when it is missing or malformed."""
    try:
        data = parse_yaml(path.read_text(), str(path), RenderError)
    except OSError as error:
        raise RenderError(f"{path}: cannot read LiteLLM's facts ({error.strerror})") from None
    section = data.get("enterprise") if isinstance(data, dict) else None
    settings = section.get("settings") if isinstance(section, dict) else None
    if not isinstance(section, dict) or not isinstance(section.get("licence_env"), str) \
            or not isinstance(settings, dict) or not all(isinstance(names, list) for names in settings.values()):
        raise RenderError(f"{path}: enterprise needs a licence_env and settings (a list of names per section)")
    return EnterpriseRules(section["licence_env"], {str(part): frozenset(map(str, names))
                                                    for part, names in settings.items()})


def check_licence(sections: Mapping[str, Any], env_names: Collection[str], rules: EnterpriseRules,
                  where: str) -> None:
    """Raises RenderError naming the first setting of SECTIONS (config.yaml's, by section name)
    that needs the licence where ENV_NAMES (the env file's variables) lack it."""
    if rules.licence_env in env_names:
        return
    for part, names in rules.settings.items():
        used = sorted(names & set(sections.get(part) or {}))
        if used:
            raise RenderError(f"{where}: vars.{part}.{used[0]} needs LiteLLM's Enterprise licence, and LiteLLM exits "
                              f"at start without one; add {rules.licence_env} to the secrets file and vars.secret_env, "
                              "or remove the setting")
