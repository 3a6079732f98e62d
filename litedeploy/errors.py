"""One error family whose messages a user can act on.

Tasks turn a DeployError into a one-line message and a non-zero exit; anything else is a bug and
keeps its traceback.
"""


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
