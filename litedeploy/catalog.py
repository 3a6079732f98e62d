"""A host's models list -> LiteLLM deployments (pure): Bedrock inference profiles from the catalog
with the prefix the host's region calls for, explicit provider models, Ollama backends, per-model
limits, and prompt caching with the workshop's rule that a fallback must cache too."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import RenderError, parse_yaml
from .shapes import Rule, check, flag, list_of, mapping_of, matching, positive, string, whole

# The vars of a host that the catalog reads.
CATALOG_VARS = frozenset({"models", "aws_region", "inference_prefix", "catalog", "prompt_caching", "fallbacks",
                          "mock_response", "ollama_backends", "anthropic_model_ids"})

# Region family -> the prefix of Bedrock's cross-region inference profiles.
REGION_PREFIXES = {"us": "us", "eu": "eu", "ap": "apac"}
# Per-model settings passed to LiteLLM as they are.
LIMITS = ("max_tokens", "rpm", "tpm", "timeout")
MODEL_KEYS = {"name", "catalog", "model", "provider", *LIMITS}
# A Bedrock id of an Anthropic model -> its id in Anthropic's API: anthropic.X-v1:0 -> X, and the
# undated ids of Claude 4.6 and later as they are (anthropic.claude-opus-4-6-v1, anthropic.claude-opus-5-5).
_ANTHROPIC_ID = re.compile(r"anthropic\.(claude-[a-z0-9-]+?)(?:-v\d+(?::\d+)?)?")
# The family of a Claude id (claude-3-7-sonnet-20250219, claude-opus-5-5), which Claude Code's
# --model opus|sonnet|haiku and its default pick from.
_FAMILY = re.compile(r"claude-(?:[0-9]+-)*(opus|sonnet|haiku)\b")
_OLLAMA_URL = r"https?://[^\s/?#]+(/[^\s?#]*)?"
# What each var the catalog reads must be (models: inventory.py checks the list and names).
CATALOG_RULES: Mapping[str, Rule] = {
    "aws_region": (matching(r"[a-z]{2}(-[a-z]+)+-[0-9]+"), "an AWS region such as us-east-1"),
    "inference_prefix": (matching(r"[a-z]+"), "a Bedrock inference profile prefix such as us, eu, apac or global"),
    "catalog": (mapping_of(lambda entry: isinstance(entry, dict)), "a mapping of model keys to catalog entries"),
    "prompt_caching": (flag, "true or false"),
    "fallbacks": (mapping_of(list_of(string)), "a mapping of model names to lists of model names"),
    "mock_response": (string, "a text"),
    "ollama_backends": (list_of(matching(_OLLAMA_URL)), "a list of Ollama URLs (http://host:11434)"),
    "anthropic_model_ids": (flag, "true or false"),
}
# What each key of a catalog entry (models.yaml, vars.catalog) must be.
ENTRY_RULES: Mapping[str, Rule] = {
    "bedrock_id": (matching(r"[A-Za-z0-9][A-Za-z0-9.:_-]*"), "a Bedrock model id"),
    "prefixes": (list_of(matching(r"[a-z]+")), "a list of inference profile prefixes (us, eu, apac, global)"),
    "caching": (flag, "true or false"),
}
# What each key of a vars.models entry must be.
MODEL_RULES: Mapping[str, Rule] = {
    "name": (matching(r"[^\s]+"), "a model name without spaces"),
    "catalog": (string, "a key of models.yaml or vars.catalog"),
    "model": (matching(r"[^\s]+"), "a LiteLLM model string (provider/model)"),
    "provider": (string, "ollama"),
    "max_tokens": (whole, "a whole number of tokens"),
    "rpm": (whole, "a whole number of requests per minute"),
    "tpm": (whole, "a whole number of tokens per minute"),
    "timeout": (positive, "a positive number of seconds"),
}
# Where LiteLLM puts the cache_control marker: the system prompt, which is what a coding agent repeats.
CACHE_POINTS = [{"location": "message", "role": "system"}]


@dataclass(frozen=True)
class Deployment:
    """One entry of LiteLLM's model_list. Several may share a name: LiteLLM balances between them."""

    name: str
    params: dict[str, Any]
    caching: bool
    # The model's id in Anthropic's own API (claude-sonnet-4-20250514), for catalog models.
    anthropic_id: str | None = None


def load_catalog(path: Path) -> dict[str, dict]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RenderError(f"{path}: cannot read the model catalog ({exc.strerror})") from None
    catalog = parse_yaml(text, str(path), RenderError) or {}
    if not isinstance(catalog, dict):
        raise RenderError(f"{path}: expected a mapping of model keys to entries")
    for key, entry in catalog.items():
        _check_entry(entry, str(path), f"{key}.")
    return catalog


def _check_entry(entry: Any, where: str, prefix: str) -> None:
    if not isinstance(entry, dict) or "bedrock_id" not in entry or "prefixes" not in entry:
        raise RenderError(f"{where}: {prefix.rstrip('.')} needs bedrock_id and a list of prefixes")
    check(ENTRY_RULES, entry, where, prefix)


def check_catalog_vars(variables: Mapping[str, Any], where: str) -> None:
    """The vars the catalog reads, each of the type it needs, and every model entry's keys.
    Raises RenderError naming the var (vars.models[1].rpm, vars.catalog.claude-x.prefixes)."""
    check(CATALOG_RULES, variables, where)
    for key, entry in (variables.get("catalog") or {}).items():
        _check_entry(entry, where, f"vars.catalog.{key}.")
    for index, spec in enumerate(variables["models"]):
        unknown = set(spec) - MODEL_KEYS
        if unknown:
            raise RenderError(f"{where}: vars.models[{index}] has unknown key {sorted(unknown)[0]!r}")
        check(MODEL_RULES, spec, where, f"vars.models[{index}].")


def resolve_models(variables: Mapping[str, Any], catalog: Mapping[str, dict], where: str) -> list[Deployment]:
    """A host's vars.models as LiteLLM deployments. Raises RenderError naming the var at fault."""
    check_catalog_vars(variables, where)
    entries = {**catalog, **(variables.get("catalog") or {})}
    caching_on = bool(variables.get("prompt_caching", False))
    deployments: list[Deployment] = []
    for index, spec in enumerate(variables["models"]):
        limits = {key: spec[key] for key in LIMITS if key in spec}
        if spec.get("provider") == "ollama":
            deployments += _ollama(spec, variables, limits, where)
            continue
        if spec.get("provider"):
            raise RenderError(f"{where}: vars.models[{index}]: unknown provider {spec['provider']!r} "
                              "(ollama, or give the LiteLLM model string as 'model')")
        anthropic_id = None
        if "model" in spec:
            params, caching = {"model": spec["model"]}, False
            if spec["model"].startswith("bedrock/"):
                params["aws_region_name"] = variables["aws_region"]
        else:
            params, caching = _bedrock(spec.get("catalog", spec["name"]), entries, variables, where)
            found = _ANTHROPIC_ID.fullmatch(params["model"].partition(".")[2])
            anthropic_id = found.group(1) if found else None
        params.update(limits)
        if "mock_response" in variables:
            params["mock_response"] = variables["mock_response"]
        if caching_on and caching:
            params["cache_control_injection_points"] = CACHE_POINTS
        deployments.append(Deployment(spec["name"], params, caching, anthropic_id))
    if caching_on:
        _check_caching_fallbacks(deployments, variables.get("fallbacks") or {}, where)
    return deployments


def anthropic_aliases(deployments: list[Deployment], catalog: Mapping[str, dict]) -> dict[str, Any]:
    """The ids Claude Code sends -> our model names, for LiteLLM's model_group_alias: each configured
    model's own ids (dated, and the undated alias Anthropic also takes), listed in /v1/models; then
    the ids of every other catalog model of a family the host serves (a newer client asks for
    claude-opus-5-5 by default) -> the host's first model of that family, hidden from /v1/models.
    Ids that already name a configured model are left out."""
    names = {d.name for d in deployments}
    aliases: dict[str, Any] = {}
    serving: dict[str, str] = {}  # family -> the host's first model of it
    for deployment in deployments:
        for alias in _ids(deployment.anthropic_id):
            if alias not in names:
                aliases.setdefault(alias, deployment.name)
        family = _FAMILY.match(deployment.anthropic_id or "")
        if family:
            serving.setdefault(family.group(1), deployment.name)
    for entry in catalog.values():
        found = _ANTHROPIC_ID.fullmatch(str(entry.get("bedrock_id", "")))
        family = _FAMILY.match(found.group(1)) if found else None
        if found and family and family.group(1) in serving:
            for alias in _ids(found.group(1)):
                if alias not in names:
                    aliases.setdefault(alias, {"model": serving[family.group(1)], "hidden": True})
    return aliases


def families_of(config_text: str) -> dict[str, str]:
    """family (opus, sonnet, haiku) -> the first model of config.yaml's model_list whose
    deployment is a Claude model of it (read from its Bedrock or Anthropic id, not its name)."""
    families: dict[str, str] = {}
    for entry in (yaml.safe_load(config_text) or {}).get("model_list") or []:
        model = str((entry.get("litellm_params") or {}).get("model", ""))
        found = _FAMILY.search(model.rsplit("/", 1)[-1])
        if found:
            families.setdefault(found.group(1), entry["model_name"])
    return families


def _ids(anthropic_id: str | None) -> tuple[str, ...]:
    """An Anthropic id and its undated alias (claude-sonnet-4-5-20250929, claude-sonnet-4-5)."""
    return tuple(dict.fromkeys((anthropic_id, re.sub(r"-\d{8}$", "", anthropic_id)))) if anthropic_id else ()


def inference_prefix(variables: Mapping[str, Any], where: str) -> str:
    if variables.get("inference_prefix"):
        return str(variables["inference_prefix"])
    region = str(variables.get("aws_region", ""))
    family = region.split("-", 1)[0]
    if family not in REGION_PREFIXES:
        raise RenderError(f"{where}: no Bedrock inference profile prefix for region {region!r}; "
                          "set vars.inference_prefix")
    return REGION_PREFIXES[family]


def _bedrock(key: str, entries: Mapping[str, dict], variables: Mapping[str, Any],
             where: str) -> tuple[dict[str, Any], bool]:
    entry = entries.get(key)
    if entry is None:
        raise RenderError(f"{where}: unknown model {key!r}: not in models.yaml or vars.catalog "
                          f"(known: {', '.join(sorted(entries))})")
    prefix = inference_prefix(variables, where)
    if prefix not in entry["prefixes"]:
        raise RenderError(f"{where}: {key} is not offered through the {prefix}. inference profile "
                          f"(region {variables.get('aws_region')}); it is offered as "
                          f"{', '.join(p + '.' for p in entry['prefixes'])}")
    return ({"model": f"bedrock/{prefix}.{entry['bedrock_id']}", "aws_region_name": variables["aws_region"]},
            bool(entry.get("caching", False)))


def _ollama(spec: Mapping[str, Any], variables: Mapping[str, Any], limits: dict, where: str) -> list[Deployment]:
    """One deployment per backend under the same name: LiteLLM spreads requests across them."""
    backends = variables.get("ollama_backends") or []
    if not backends or not isinstance(spec.get("model"), str):
        raise RenderError(f"{where}: Ollama model {spec['name']!r} needs 'model' and vars.ollama_backends")
    return [Deployment(spec["name"], {"model": f"ollama_chat/{spec['model']}", "api_base": base, **limits}, False)
            for base in backends]


def _check_caching_fallbacks(deployments: list[Deployment], fallbacks: Mapping[str, list], where: str) -> None:
    caches = {d.name: d.caching for d in deployments}
    for source, targets in fallbacks.items():
        for target in targets:
            if caches.get(source) and target in caches and not caches[target]:
                raise RenderError(f"{where}: prompt caching is on, but fallback {target!r} of {source!r} "
                                  "does not support it; choose a fallback that does")
