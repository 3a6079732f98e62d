"""The folder a user deploys from: its inventory and templates, found through Invoke's config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .inventory import Inventory, load_inventory
from .render import Templates, load_templates


@dataclass(frozen=True)
class Project:
    root: Path
    inventory: Inventory
    templates: Templates


def load_project(root: Path, inventory: str, templates: str, catalog: str = "models.yaml") -> Project:
    """Relative paths are taken from the project root, so `inv` works from any subfolder."""
    return Project(root, load_inventory(root / inventory), load_templates(root / templates, root / catalog))
