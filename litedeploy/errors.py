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


class CommandFailed(DeployError):
    """A command the user ran on the host (ops.exec) exited non-zero: the task exits with its code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class DeployFailed(DeployError):
    """A deploy that reached the host and failed; `details` (the container's last log lines) are
    shown before the one-line message."""

    def __init__(self, message: str, details: str = "", rolled_back: bool = False) -> None:
        super().__init__(message)
        self.details = details
        self.rolled_back = rolled_back


class _UniqueKeys:
    """Safe YAML in which a key given twice in one mapping is an error, not "the last one wins"
    (a merge key `<<:` may still be overridden, as YAML intends)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)  # type: ignore[attr-defined]
            if not isinstance(key, (str, int, float, bool)):
                continue  # an unhashable key is reported by SafeLoader itself
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)  # type: ignore[misc]


class YAML11Number(int):
    """An int YAML 1.1 read from digits that mean something else to a reader: `0123` (octal, 83),
    `1:30` (base 60, 90). Kept as the int PyYAML makes, with what was written, so a caller can
    refuse it by key (YAML 1.2, and every reader of it, takes `0123` as 123)."""

    written: str
    kind: str


def _yaml11_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    value = yaml.SafeLoader.construct_yaml_int(loader, node)
    digits = str(node.value).lstrip("+-").replace("_", "")
    kind = "base 60" if ":" in digits else "octal" if len(digits) > 1 and digits[0] == "0" and digits.isdigit() else ""
    if not kind:
        return value
    number = YAML11Number(value)
    number.written, number.kind = str(node.value), kind
    return number


class _UniqueKeyLoader(_UniqueKeys, yaml.SafeLoader):
    pass


# The same rules on libyaml's parser where PyYAML has it (PyPI's wheels do): the pure-Python parser
# took a fifth of a no-op deploy, reading hosts.yaml, the catalog and LiteLLM's facts. Text it
# refuses is parsed again by the pure-Python one, whose errors name the line the admin wrote.
class _FastLoader(_UniqueKeys, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


for _loader in (_UniqueKeyLoader, _FastLoader):
    _loader.add_constructor("tag:yaml.org,2002:int", _yaml11_int)


def parse_yaml(text: str, source: str, error: type[DeployError]) -> Any:
    """YAML, or `error` naming the file and line where it breaks or repeats a key."""
    try:
        return yaml.load(text, Loader=_FastLoader)
    except yaml.YAMLError:
        pass
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = str(getattr(exc, "problem", ""))
        if problem.startswith("duplicate key"):
            raise error(f"{source}:{where}: {problem}") from None
        raise error(f"{source}:{where} is not valid YAML") from None
