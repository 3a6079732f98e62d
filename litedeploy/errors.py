"""One error family whose messages a user can act on.

Tasks turn a DeployError into a one-line message and a non-zero exit; anything else is a bug and
keeps its traceback.
"""

from typing import Any

import yaml


class DeployError(Exception):
    """A problem the user can fix: the message names the file, host or key at fault."""


class InventoryError(DeployError):
    """hosts.yaml is malformed or names something that does not exist."""


class SecretsError(DeployError):
    """The secrets file cannot be decrypted or lacks a value the templates need."""


class RenderError(DeployError):
    """A template failed to render, or rendered something LiteLLM or compose would reject."""


class ComposeFileError(DeployError):
    """The host's compose file cannot be edited safely (bad YAML, broken markers)."""


class RemoteError(DeployError):
    """The host could not be reached, refused us, or a command on it failed."""


class VerifyError(DeployError):
    """The gateway did not become healthy or did not answer as configured."""


class DeployFailed(DeployError):
    """A deploy that reached the host and failed; `details` (the container's last log lines) are
    shown before the one-line message."""

    def __init__(self, message: str, details: str = "", rolled_back: bool = False) -> None:
        super().__init__(message)
        self.details = details
        self.rolled_back = rolled_back


def parse_yaml(text: str, source: str, error: type[DeployError]) -> Any:
    """YAML, or `error` naming the file and line where it breaks."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise error(f"{source}:{where} is not valid YAML") from None
