"""`fab` entry point: the same namespace as tasks.py (`fab -H lab compose.restart`)."""

from tasks import ns

__all__ = ["ns"]
