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
    def from_template(cls, template: str) -> Markers:
        return cls(template.replace("{mark}", "BEGIN"), template.replace("{mark}", "END"))


@dataclass(frozen=True)
class _Lines:
    """A file as lines without their endings. Each line keeps its own ending (a file edited on
    Windows and then by the old role mixes CRLF and LF) and a leading byte-order mark is kept."""

    bom: str
    lines: list[str]
    endings: list[str]

    @classmethod
    def of(cls, text: str) -> _Lines:
        bom = "\ufeff" if text.startswith("\ufeff") else ""
        pieces = text[len(bom):].split("\n")
        lines, endings = [], []
        for piece in pieces[:-1]:
            crlf = piece.endswith("\r")
            lines.append(piece[:-1] if crlf else piece)
            endings.append("\r\n" if crlf else "\n")
        if pieces[-1]:
            lines.append(pieces[-1])
            endings.append("")
        return cls(bom, lines, endings)

    def spliced(self, start: int, stop: int, new: list[str]) -> str:
        """The text with lines[start:stop] replaced by NEW, each ending as most lines outside that
        range do (the admin's, not the old role's); a line that had no ending and is no longer
        last gets one."""
        kept = [ending for ending in self.endings[:start] + self.endings[stop:] if ending] or self.endings
        newline = "\r\n" if kept.count("\r\n") > kept.count("\n") else "\n"
        lines = self.lines[:start] + new + self.lines[stop:]
        endings = self.endings[:start] + [newline] * len(new) + self.endings[stop:]
        endings = [ending or (newline if index < len(lines) - 1 else "") for index, ending in enumerate(endings)]
        return self.bom + "".join(line + ending for line, ending in zip(lines, endings))

    def with_line(self, index: int, line: str) -> _Lines:
        """The same file with one line's text replaced, its ending kept."""
        return _Lines(self.bom, [*self.lines[:index], line, *self.lines[index + 1:]], self.endings)


def find_block(text: str, markers: Markers, source: str) -> tuple[int, int] | None:
    """Line indexes of the BEGIN and END markers, or None when the file has no block."""
    lines = _Lines.of(text).lines
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
    """The file with our block in place: replaced where it was, else added to `services:`. A block
    the old role appended under another top-level key (blockinfile writes at the end of the file,
    where an `x-` key may be open) is moved into `services:`."""
    parsed = _Lines.of(text)
    lines = parsed.lines
    found = find_block(text, markers, source)
    outside = lines[:found[0]] + lines[found[1] + 1:] if found else lines
    block_lines = _reindented(block.rstrip("\r\n").split("\n"), _service_indent(outside))
    ours = [markers.begin, *block_lines, markers.end]
    if found and _top_level_key_above(lines, found[0]) == "services":
        return parsed.spliced(found[0], found[1] + 1, ours)
    if found:
        parsed = _Lines.of(parsed.spliced(found[0], found[1] + 1, []))
        lines = parsed.lines
    if not "".join(lines).strip():
        return _Lines(parsed.bom, [], []).spliced(0, 0, ["services:", *ours])
    empty = next((i for i, line in enumerate(lines) if _EMPTY_SERVICES.match(line)), None)
    if empty is not None:
        parsed = parsed.with_line(empty, re.sub(r"\s*\{\s*\}", "", lines[empty], count=1).rstrip())
        lines = parsed.lines
    at = _end_of_services(lines, source)
    return parsed.spliced(at, at, ours)


def _top_level_key_above(lines: list[str], index: int) -> str | None:
    """The top-level key whose mapping line INDEX lies in (None above the first key)."""
    for line in reversed(lines[:index]):
        if _TOP_LEVEL_KEY.match(line):
            return line.split(":", 1)[0].strip()
    return None


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
    found = find_block(text, markers, source)
    if not found:
        return text
    parsed = _Lines.of(_Lines.of(text).spliced(found[0], found[1] + 1, []))
    start = next((i for i, line in enumerate(parsed.lines) if _SERVICES_KEY.match(line)), None)
    if start is None or _entries_below(parsed.lines, start):
        return parsed.spliced(0, 0, [])
    emptied = re.sub(r"^services:\s*", "services: {}", parsed.lines[start], count=1).replace("{}#", "{} #")
    return parsed.with_line(start, emptied).spliced(0, 0, [])


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


def _parsed(text: str, source: str) -> object:
    """The compose file as YAML for our own checks. Trailing blanks go first: compose v2 accepts a
    tab after `services:` (or before a comment), which PyYAML (and so compose v1) refuses; the host's
    own compose has the last word on the file as written."""
    view = re.sub(r"\t(?=[ \t]*#)", " ", re.sub(r"[ \t]+(?=\r?$)", "", text, flags=re.MULTILINE))
    return parse_yaml(view, source, ComposeFileError)


def check_unmanaged_service(text: str, service: str, markers: Markers, source: str) -> None:
    """A service of our name that is not inside our markers is the admin's: never add a second one."""
    if find_block(text, markers, source):
        return
    data = _parsed(text, source)
    services = data.get("services") if isinstance(data, dict) else None
    if isinstance(services, dict) and service in services:
        raise ComposeFileError(f"{source}: a service {service!r} is already defined outside the "
                               f"{markers.begin!r} block; remove it, wrap it in the markers, or set service_name")


def service_definition(text: str, service: str) -> dict:
    """A service's definition, or {} when the text does not parse or lacks it."""
    try:
        parsed = _parsed(text, "")
    except ComposeFileError:
        return {}
    services = parsed.get("services") if isinstance(parsed, dict) else None
    definition = services.get(service) if isinstance(services, dict) else None
    return definition if isinstance(definition, dict) else {}


def served_port(text: str, service: str) -> int | None:
    """The host port a compose service answers on: its first published port, else the `--port` of
    its command (host networking); None when the file does not say."""
    definition = service_definition(text, service)
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
    image = service_definition(text, service).get("image")
    return image if isinstance(image, str) else None


def block_text(text: str, markers: Markers, source: str) -> str | None:
    """The lines between our markers, as `replace_block` takes a block (a kept release's service)."""
    found = find_block(text, markers, source)
    if not found:
        return None
    lines = _Lines.of(text).lines
    return "\n".join(lines[found[0] + 1:found[1]]) + "\n"


def only_empty_services(text: str) -> bool:
    """Whether the file holds nothing but `services: {}` (and comments): compose v1 refuses that
    file (it reads a service named `services`), and nothing in it is left to run."""
    try:
        data = _parsed(text, "")
    except ComposeFileError:
        return False
    return isinstance(data, dict) and set(data) == {"services"} and not data["services"]


def check_compose(text: str, service: str | None, source: str) -> None:
    """A compose file must parse and have `services:`; after our edit, our service must be in it."""
    data = _parsed(text, source)
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        raise ComposeFileError(f"{source}: has no top-level 'services:' mapping")
    if service is not None and service not in services:
        raise ComposeFileError(f"{source}: service {service!r} is not under 'services:'")
