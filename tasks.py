"""`inv` entry point: the litedeploy task namespace for this folder's hosts.yaml and templates/."""

from pathlib import Path

from litedeploy.tasks import namespace

ns = namespace(Path(__file__).resolve().parent)
