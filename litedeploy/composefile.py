"""The managed block in the host's compose file, edited like Ansible's blockinfile (pure text -> text).

Only the lines between our markers are ours; every other byte of the file is kept. A new block goes
at the end of the top-level `services:` mapping, so files with `volumes:` or `networks:` after it
stay valid (blockinfile's append-at-end would not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ComposeFileError, parse_yaml

_TOP_LEVEL_KEY = re.compile(r"^[^\s#][^:]*:")
_SERVICES_KEY = re.compile(r"^services:\s*(#.*)?$")
# `services: {}`: an empty flow mapping, which becomes a block mapping when our service joins it.
_EMPTY_SERVICES = re.compile(r"^services:\s*\{\s*\}\s*(#.*)?$")
_FLOW_SERVICES = re.compile(r"^services:\s*[{\[]")


@dataclass(frozen=True)
class Markers:
    begin: str
    end: str

    @classmethod
    def from_template(cls, template: str) -> "Markers":
        return cls(template.replace("{mark}", "BEGIN"), template.replace("{mark}", "END"))


@dataclass(frozen=True)
class _Lines:
    """A file split into lines, remembering its line ending and whether it ended with one."""

    lines: list[str]
    newline: str
    trailing_newline: bool

    @classmethod
    def of(cls, text: str) -> "_Lines":
        newline = "\r\n" if "\r\n" in text else "\n"
        return cls(text.split(newline) if text else [], newline, text.endswith(newline))

    def text(self, lines: list[str], ends_with_newline: bool) -> str:
        joined = self.newline.join(lines)
        if ends_with_newline and lines:
            joined += self.newline
        return joined


def find_block(text: str, markers: Markers, source: str) -> tuple[int, int] | None:
    """Line indexes of the BEGIN and END markers, or None when the file has no block."""
    lines = _Lines.of(text).lines
    if lines and lines[-1] == "":
        lines = lines[:-1]
    begins = [i for i, line in enumerate(lines) if line.rstrip() == markers.begin]
    ends = [i for i, line in enumerate(lines) if line.rstrip() == markers.end]
    if not begins and not ends:
        return None
    if len(begins) > 1 or len(ends) > 1:
        raise ComposeFileError(f"{source}: the marker {markers.begin!r} appears more than once; "
                               "remove the duplicated block by hand")
    if len(begins) != len(ends) or ends[0] < begins[0]:
        raise ComposeFileError(f"{source}: the markers {markers.begin!r} and {markers.end!r} "
                               "do not enclose a block; repair them by hand")
    return begins[0], ends[0]


def replace_block(text: str, block: str, markers: Markers, source: str) -> str:
    """The file with our block in place: replaced where it was, else added to `services:`."""
    parsed = _Lines.of(text)
    lines = parsed.lines[:-1] if parsed.trailing_newline else parsed.lines
    found = find_block(text, markers, source)
    outside = lines[:found[0]] + lines[found[1] + 1:] if found else lines
    block_lines = _reindented(block.rstrip("\r\n").splitlines(), _service_indent(outside))
    ours = [markers.begin, *block_lines, markers.end]
    if found:
        begin, end = found
        return parsed.text(lines[:begin] + ours + lines[end + 1:], parsed.trailing_newline or end + 1 == len(lines))
    if not text.strip():
        return parsed.text(["services:", *ours], True)
    empty = next((i for i, line in enumerate(lines) if _EMPTY_SERVICES.match(line)), None)
    if empty is not None:
        lines = [*lines[:empty], re.sub(r"\s*\{\s*\}", "", lines[empty], count=1).rstrip(), *lines[empty + 1:]]
    at = _end_of_services(lines, source)
    return parsed.text(lines[:at] + ours + lines[at:], parsed.trailing_newline or at == len(lines))


def _service_indent(lines: list[str]) -> int | None:
    """How far the file indents the services under `services:` (None when it has none yet)."""
    start = next((i for i, line in enumerate(lines) if _SERVICES_KEY.match(line)), None)
    if start is None:
        return None
    for line in lines[start + 1:]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        return indent or None
    return None


def _reindented(block: list[str], indent: int | None) -> list[str]:
    """The block with each level of its indentation made as wide as the file's own."""
    base = next((len(line) - len(line.lstrip(" ")) for line in block if line.strip()), 0)
    if not indent or not base or indent == base:
        return block
    return [" " * ((len(line) - len(line.lstrip(" "))) // base * indent) + line.lstrip(" ") if line.strip() else line
            for line in block]


def remove_block(text: str, markers: Markers, source: str) -> str:
    """The file without our block. When ours was the only service, `services:` becomes `services: {}`:
    compose refuses a `services:` with nothing under it."""
    parsed = _Lines.of(text)
    lines = parsed.lines[:-1] if parsed.trailing_newline else parsed.lines
    found = find_block(text, markers, source)
    if not found:
        return text
    begin, end = found
    kept = lines[:begin] + lines[end + 1:]
    start = next((i for i, line in enumerate(kept) if _SERVICES_KEY.match(line)), None)
    if start is not None and not _entries_below(kept, start):
        kept[start] = re.sub(r"^services:\s*", "services: {}", kept[start], count=1)
        kept[start] = re.sub(r"\{\}#", "{} #", kept[start])
    return parsed.text(kept, parsed.trailing_newline)


def _entries_below(lines: list[str], start: int) -> bool:
    """Whether the top-level key at START has any entry (a line that is not blank or a comment)
    before the next top-level key."""
    for line in lines[start + 1:]:
        if _TOP_LEVEL_KEY.match(line):
            return False
        if line.strip() and not line.lstrip().startswith("#"):
            return True
    return False


def _end_of_services(lines: list[str], source: str) -> int:
    """Index just past the last line of the top-level `services:` mapping (before trailing blanks)."""
    start = next((i for i, line in enumerate(lines) if _SERVICES_KEY.match(line)), None)
    if start is None and any(_FLOW_SERVICES.match(line) for line in lines):
        raise ComposeFileError(f"{source}: 'services:' is written in flow style ({{...}}); write it as a block "
                               "mapping (one service per indented line) so the litellm service can be added")
    if start is None:
        raise ComposeFileError(f"{source}: no top-level 'services:' mapping to add the litellm service to")
    end = next((i for i in range(start + 1, len(lines)) if _TOP_LEVEL_KEY.match(lines[i])), len(lines))
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return end


def check_unmanaged_service(text: str, service: str, markers: Markers, source: str) -> None:
    """A service of our name that is not inside our markers is the admin's: never add a second one."""
    if find_block(text, markers, source):
        return
    data = parse_yaml(text, source, ComposeFileError)
    services = data.get("services") if isinstance(data, dict) else None
    if isinstance(services, dict) and service in services:
        raise ComposeFileError(f"{source}: a service {service!r} is already defined outside the "
                               f"{markers.begin!r} block; remove it, wrap it in the markers, or set service_name")


def _service(text: str, service: str) -> dict:
    """A service's definition, or {} when the text does not parse or lacks it."""
    try:
        definition = ((parse_yaml(text, "", ComposeFileError) or {}).get("services") or {}).get(service)
    except (ComposeFileError, AttributeError):
        return {}
    return definition if isinstance(definition, dict) else {}


def served_port(text: str, service: str) -> int | None:
    """The host port a compose service answers on: its first published port, else the `--port` of
    its command (host networking); None when the file does not say."""
    definition = _service(text, service)
    ports = definition.get("ports") or []
    command = definition.get("command") or []
    try:
        if ports and isinstance(ports[0], (str, int)):
            return int(str(ports[0]).rsplit(":", 2)[-2]) if ":" in str(ports[0]) else int(ports[0])
        if isinstance(command, list) and "--port" in command[:-1]:
            return int(command[command.index("--port") + 1])
    except ValueError:
        pass  # a range or a ${VARIABLE}: not a port we can name
    return None


def served_image(text: str, service: str) -> str | None:
    image = _service(text, service).get("image")
    return image if isinstance(image, str) else None


def block_text(text: str, markers: Markers, source: str) -> str | None:
    """The lines between our markers, as `replace_block` takes a block (a kept release's service)."""
    found = find_block(text, markers, source)
    if not found:
        return None
    lines = _Lines.of(text).lines
    return "\n".join(lines[found[0] + 1:found[1]]) + "\n"


def check_compose(text: str, service: str | None, source: str) -> None:
    """A compose file must parse and have `services:`; after our edit, our service must be in it."""
    data = parse_yaml(text, source, ComposeFileError)
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        raise ComposeFileError(f"{source}: has no top-level 'services:' mapping")
    if service is not None and service not in services:
        raise ComposeFileError(f"{source}: service {service!r} is not under 'services:'")
