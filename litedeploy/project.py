"""The folder a user deploys from: its inventory and templates, found through Invoke's config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .advisories import Releases, load_releases
from .inventory import Inventory, load_inventory
from .render import Templates, load_templates


@dataclass(frozen=True)
class Project:
    root: Path
    inventory: Inventory
    templates: Templates
    releases: Releases  # LiteLLM's releases and advisories (litellm.yaml)


def load_project(root: Path, inventory: str, templates: str, catalog: str = "models.yaml") -> Project:
    """Relative paths are taken from the project root, so `inv` works from any subfolder. LiteLLM's
    facts (litellm.yaml) sit beside the catalog; a host that names no image runs their default release."""
    facts_file = (root / catalog).with_name("litellm.yaml")
    releases = load_releases(facts_file)
    return Project(root, load_inventory(root / inventory, releases.default_image),
                   load_templates(root / templates, root / catalog, facts_file), releases)
