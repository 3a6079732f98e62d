"""What a value read from hosts.yaml must be: small predicates, each paired with the words an error
uses for it, and the one loop that applies a set of them (pure).

YAML gives any field any type (`"false"` is a string, `5` where a list was meant); a template or
the catalog then trips over it far from the setting. Checked here first, the error names the
setting and what it must be.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from .errors import RenderError

Predicate = Callable[[Any], bool]
# A check and what the value must be, as the error says it: "vars.workers must be <meaning>".
Rule = tuple[Predicate, str]


def whole(value: Any) -> bool:
    """A positive int (YAML's true is an int to Python, never a count)."""
    return type(value) is int and value > 0


def positive(value: Any) -> bool:
    return type(value) in (int, float) and value > 0


def flag(value: Any) -> bool:
    """true or false, as YAML writes them: the string "false" is not one."""
    return isinstance(value, bool)


def string(value: Any) -> bool:
    return isinstance(value, str)


def matching(pattern: str) -> Predicate:
    compiled = re.compile(pattern)
    return lambda value: isinstance(value, str) and compiled.fullmatch(value) is not None


def absolute_path(pattern: str) -> Predicate:
    """An absolute path of PATTERN written as it is meant (posixpath.normpath leaves it as it is):
    compose v1 normalises /srv/x/./y in a volume, v2 does not, and .. could climb out of a folder."""
    matches = matching(pattern)
    return lambda value: matches(value) and posixpath.normpath(value) == value


def text(value: Any) -> bool:
    """One line of text, without control characters (a path, a name)."""
    return isinstance(value, str) and re.fullmatch(r"[^\x00-\x1f]+", value) is not None


def one_of(choices: Sequence[Any]) -> Predicate:
    return lambda value: isinstance(value, str) and value in choices


def port(value: Any) -> bool:
    return type(value) is int and 0 < value < 65536  # True is an int to Python, not a port


def ip_address(value: Any) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return isinstance(value, str)


# A plain scalar YAML 1.2 (compose v2's parser) reads as a number: 1e3 is text to PyYAML, 1000 to compose-go.
_YAML12_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|0o[0-7]+|0x[0-9a-fA-F]+")


def yaml_text(value: str) -> bool:
    """Whether both YAMLs compose reads (1.1 for v1, 1.2 for v2) take VALUE, unquoted, as this text."""
    return yaml.safe_load(value) == value and not _YAML12_NUMBER.fullmatch(value)


def list_of(item: Predicate) -> Predicate:
    return lambda value: isinstance(value, list) and all(item(element) for element in value)


def mapping_of(item: Predicate) -> Predicate:
    """A mapping of string keys whose values pass ITEM."""
    return lambda value: isinstance(value, dict) and all(isinstance(k, str) and item(v) for k, v in value.items())


def check(rules: Mapping[str, Rule], values: Mapping[str, Any], where: str, prefix: str = "vars.") -> None:
    """Each of VALUES that RULES names passes its rule. Raises RenderError "WHERE: PREFIXname must
    be MEANING, not VALUE" for the first that does not."""
    for name, (valid, meaning) in rules.items():
        if name in values and not valid(values[name]):
            raise RenderError(f"{where}: {prefix}{name} must be {meaning}, not {values[name]!r}")
