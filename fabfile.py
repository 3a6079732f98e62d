"""`fab` entry point: the same namespace as tasks.py (`fab -H lab compose.restart`)."""

from pathlib import Path

from litedeploy.tasks import namespace

ns = namespace(Path(__file__).resolve().parent)
