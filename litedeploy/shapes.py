"""What a value read from hosts.yaml must be: small predicates, each paired with the words an error
uses for it, and the one loop that applies a set of them (pure).

YAML gives any field any type (`"false"` is a string, `5` where a list was meant); a template or
the catalog then trips over it far from the setting. Checked here first, the error names the
setting and what it must be.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

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
