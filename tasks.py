"""`inv` entry point: the litedeploy task namespace for this folder's hosts.yaml and templates/,
and this checkout's lab (`inv lab.up`: the local target `lab`, the locks, the advisories refresh),
which is test infrastructure, not part of the litedeploy package."""

from pathlib import Path

from invoke import Collection

from lab import tasks as lab_tasks
from litedeploy.tasks import namespace

ns = namespace(Path(__file__).resolve().parent)
ns.add_collection(Collection.from_module(lab_tasks, name="lab"))
