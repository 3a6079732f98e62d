"""Refreshing litellm.yaml's advisories from GitHub's advisory database (a dev task, `inv
lab.advisories`): GitHub's JSON as our entries (pure), merged over the file's, which keeps the ones
GitHub does not hold (OSV's MAL- records of malicious uploads)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import yaml

# GitHub's global advisories for the PyPI package (docs.github.com/rest/security-advisories/global-advisories).
FEED = "https://api.github.com/advisories?ecosystem=pip&affects=litellm&per_page=100"


def entries_of(advisories: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """GitHub's global advisories -> litellm.yaml entries, one per affected range of the litellm
    package; withdrawn ones are left out. GitHub writes `= 1.82.7` where we write `== 1.82.7`."""
    entries = []
    for advisory in advisories:
        if advisory.get("withdrawn_at"):
            continue
        for vulnerability in advisory.get("vulnerabilities") or []:
            if (vulnerability.get("package") or {}).get("name", "").lower() != "litellm":
                continue
            affected = re.sub(r"(^|,\s*)=\s*", r"\1== ", vulnerability["vulnerable_version_range"])
            entry = {"id": advisory["ghsa_id"], "severity": advisory["severity"], "summary": advisory["summary"],
                     "affected": affected, "source": advisory["html_url"]}
            if advisory.get("cve_id"):
                entry["aliases"] = [advisory["cve_id"]]
            if vulnerability.get("first_patched_version"):
                entry["fixed_in"] = str(vulnerability["first_patched_version"])
            entries.append(entry)
    return entries


def merged(current: list[dict[str, Any]], fetched: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fetched entries, then the current ones whose id GitHub did not return."""
    ids = {entry["id"] for entry in fetched}
    return fetched + [entry for entry in current if entry.get("id") not in ids]


def refresh(facts_file: Path, fetch=lambda: json.load(urllib.request.urlopen(FEED, timeout=30))) -> int:
    """Rewrites the `advisories:` list that ends FACTS_FILE (its comments above stay); returns how
    many entries it holds now."""
    text = facts_file.read_text()
    head, marker, _ = text.partition("\nadvisories:\n")
    current = (yaml.safe_load(text) or {}).get("advisories") or []
    entries = merged(current, entries_of(fetch()))
    facts_file.write_text(head + marker + yaml.safe_dump(entries, sort_keys=False, allow_unicode=True, width=110))
    return len(entries)
