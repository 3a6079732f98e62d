"""The task namespace shared by `inv` (tasks.py) and `fab` (fabfile.py)."""

from pathlib import Path

from invoke import Collection

from . import compose, config, lab, ops
from .deploy import deploy


def namespace(project: Path) -> Collection:
    ns = Collection(deploy, Collection.from_module(config), Collection.from_module(compose),
                    Collection.from_module(ops), Collection.from_module(lab))
    ns.configure({"litellm": {"project": str(project), "inventory": "hosts.yaml",
                              "templates": "templates", "catalog": "models.yaml"}})
    return ns
