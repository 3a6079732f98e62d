"""The folder a user deploys from: its inventory and templates, found through Invoke's config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from .inventory import Inventory, load_inventory
from .render import template_environment


@dataclass(frozen=True)
class Project:
    root: Path
    inventory: Inventory
    templates: jinja2.Environment


def load_project(root: Path, inventory: str, templates: str) -> Project:
    """Relative paths are taken from the project root, so `inv` works from any subfolder."""
    return Project(root, load_inventory(root / inventory), template_environment(root / templates))
