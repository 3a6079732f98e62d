"""The task namespace shared by `inv` (tasks.py) and `fab` (fabfile.py).

Task modules import the SSH, template and sops code inside each task, so `inv --list` and
`inv --help TASK` load none of it.
"""

from pathlib import Path

from dotenv import load_dotenv
from invoke import Collection

from . import compose, config, lock, ops, secrets
from .deploy import deploy, rollback, upgrade


def namespace(project: Path) -> Collection:
    """Local settings come from the project's .env (never committed): SOPS_AGE_KEY_FILE, and
    LITEDEPLOY_HOST / LITEDEPLOY_PROFILE as the default host and profile. The environment wins."""
    load_dotenv(project / ".env")
    ns = Collection(deploy, upgrade, rollback, Collection.from_module(config), Collection.from_module(compose),
                    Collection.from_module(ops), Collection.from_module(secrets), Collection.from_module(lock))
    ns.configure({"litellm": {"project": str(project), "inventory": "hosts.yaml",
                              "templates": "templates", "catalog": "models.yaml", "parallel": 10}})
    return ns
