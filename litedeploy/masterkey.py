"""The master key a host's gateway may run with (pure): refused before connecting when LiteLLM
would refuse to start on it, or would start with a key anyone knows. The rules are data
(litellm.yaml, with their sources), so a change of LiteLLM's is an edit there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import RenderError, parse_yaml

MASTER_KEY = "LITELLM_MASTER_KEY"


@dataclass(frozen=True)
class MasterKeyRules:
    """What LiteLLM takes as a master key: its prefix, and keys its docs publish (never safe)."""

    prefix: str
    publicly_known: frozenset[str]


def load_master_key_rules(path: Path) -> MasterKeyRules:
    """litellm.yaml's `master_key` section. Raises RenderError naming the file when it is missing or malformed."""
    try:
        data = parse_yaml(path.read_text(), str(path), RenderError)
    except OSError as error:
        raise RenderError(f"{path}: cannot read LiteLLM's facts ({error.strerror})") from None
    section = data.get("master_key") if isinstance(data, dict) else None
    if not isinstance(section, dict) or not isinstance(section.get("prefix"), str) \
            or not isinstance(section.get("publicly_known"), list):
        raise RenderError(f"{path}: master_key needs a prefix and a publicly_known list")
    return MasterKeyRules(section["prefix"], frozenset(map(str, section["publicly_known"])))


def check_master_key(key: str, rules: MasterKeyRules, source: str) -> None:
    """Raises RenderError naming SOURCE (the secrets file) when KEY is empty, lacks the prefix,
    is a published example, has surrounding spaces (LiteLLM strips them; clients do not) or holds
    characters outside printable ASCII (an HTTP header carries it; LiteLLM then fails requests
    with an unrelated error). Never says the key."""
    where = f"{source}: {MASTER_KEY}"
    fix = f"set a new one (e.g. sk- and the output of `openssl rand -hex 32`) with: sops {source}"
    if not key.strip():
        raise RenderError(f"{where} is empty: the gateway would refuse to start or run open; {fix}")
    if key != key.strip():
        raise RenderError(f"{where} starts or ends with a space, which clients would have to send too; "
                          f"remove it with: sops {source}")
    if not key.isascii() or not key.isprintable():
        raise RenderError(f"{where} holds characters outside printable ASCII, which an HTTP header cannot "
                          f"carry as written; {fix}")
    if not key.startswith(rules.prefix):
        raise RenderError(f"{where} must start with {rules.prefix} (LiteLLM's keys do); {fix}")
    if key in rules.publicly_known:
        raise RenderError(f"{where} is an example key from LiteLLM's docs, known to anyone; {fix}")
