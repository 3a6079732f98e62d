"""Refreshing litellm.yaml's advisories from GitHub's advisory database (a dev task, `inv
lab.advisories`): GitHub's JSON as our entries (pure), merged over the file's, which keeps the ones
GitHub does not hold (OSV's MAL- records of malicious uploads)."""

from __future__ import annotations

import json
import re
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from litedeploy.advisories import SEVERITIES, load_releases

# GitHub's global advisories for the PyPI package (docs.github.com/rest/security-advisories/global-advisories).
FEED = "https://api.github.com/advisories?ecosystem=pip&affects=litellm&per_page=100"


def entries_of(advisories: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """GitHub's global advisories -> litellm.yaml entries, one per affected range of the litellm
    package; withdrawn ones are left out (`withdrawn` lists them). GitHub writes `= 1.82.7` where
    we write `== 1.82.7`, and `1.40` where we want `1.40.0`; `unknown` severity counts as high."""
    entries = []
    for advisory in advisories:
        if advisory.get("withdrawn_at"):
            continue
        for vulnerability in advisory.get("vulnerabilities") or []:
            if (vulnerability.get("package") or {}).get("name", "").lower() != "litellm" \
                    or not vulnerability.get("vulnerable_version_range"):
                continue
            affected = re.sub(r"(^|,\s*)=\s*", r"\1== ", vulnerability["vulnerable_version_range"])
            affected = re.sub(r"(?<![\d.])(\d+\.\d+)(?![\d.])", r"\1.0", affected)
            severity = advisory.get("severity") if advisory.get("severity") in SEVERITIES else "high"
            entry = {"id": advisory["ghsa_id"], "severity": severity, "summary": advisory["summary"],
                     "affected": affected, "source": advisory["html_url"]}
            if advisory.get("cve_id"):
                entry["aliases"] = [advisory["cve_id"]]
            if vulnerability.get("first_patched_version"):
                entry["fixed_in"] = str(vulnerability["first_patched_version"])
            entries.append(entry)
    return entries


def withdrawn(advisories: list[dict[str, Any]]) -> set[str]:
    return {advisory["ghsa_id"] for advisory in advisories if advisory.get("withdrawn_at")}


def merged(current: list[dict[str, Any]], fetched: list[dict[str, Any]], gone: set[str]) -> list[dict[str, Any]]:
    """The fetched entries, then the current ones whose id GitHub did not return nor withdrew."""
    ids = {entry["id"] for entry in fetched} | gone
    return fetched + [entry for entry in current if entry.get("id") not in ids]


def fetch_all(url: str = FEED) -> list[dict[str, Any]]:
    """Every page of GitHub's answer (its Link header names the next one)."""
    found: list[dict[str, Any]] = []
    while url:
        with urllib.request.urlopen(url, timeout=30) as reply:
            found += json.load(reply)
            following = re.search(r'<([^>]+)>;\s*rel="next"', reply.headers.get("Link") or "")
        url = following.group(1) if following else ""
    return found


def refresh(facts_file: Path, fetch=fetch_all) -> int:
    """Rewrites the `advisories:` list that ends FACTS_FILE (its comments above stay), and only
    when the result loads as litedeploy reads it (RenderError naming the entry otherwise); returns
    how many entries it holds now."""
    text = facts_file.read_text()
    head, marker, _ = text.partition("\nadvisories:\n")
    advisories = fetch()
    current = (yaml.safe_load(text) or {}).get("advisories") or []
    entries = merged(current, entries_of(advisories), withdrawn(advisories))
    new = head + marker + yaml.safe_dump(entries, sort_keys=False, allow_unicode=True, width=110)
    with tempfile.TemporaryDirectory() as folder:
        candidate = Path(folder) / facts_file.name
        candidate.write_text(new)
        load_releases(candidate)
    facts_file.write_text(new)
    return len(entries)
