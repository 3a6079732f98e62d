"""The audit record: one per task that changed or tried to change a host, written once, at the end,
as a JSON line of the host's audit log (commands/audit.py appends it; releases.history reads it)."""

from __future__ import annotations

import getpass
import socket
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

# Written only when set, as the log has always had them.
_WHEN_SET = ("result", "error", "image", "previous_image", "rollback_to")


@dataclass
class AuditRecord:
    """`id` is also the release's name under the host's releases folder (`20261201T052233Z-1a2b3c`);
    `image` is what runs after the task (an image reference pinned to its digest, or a systemd
    host's venv); `result` is ok, failed or interrupted."""

    id: str
    time: str  # ISO 8601, UTC, seconds
    action: str  # deploy, upgrade, rollback, remove
    host: str
    user: str
    origin: str  # the machine the task ran on ("from" in the log)
    commit: str | None  # the project's git commit, if it is a checkout
    changed: list[str] = field(default_factory=list)  # paths on the host
    restart: str | None = None  # "up", "restart", "removed" or None
    rolled_back: bool = False
    result: str | None = None
    error: str | None = None  # secrets masked
    image: str | None = None
    previous_image: str | None = None
    rollback_to: str | None = None  # the release a rollback went back to

    @classmethod
    def begin(cls, action: str, host: str, commit: str | None) -> AuditRecord:
        now = datetime.now(timezone.utc)
        return cls(id=now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6],
                   time=now.isoformat(timespec="seconds"), action=action, host=host, user=getpass.getuser(),
                   origin=socket.gethostname(), commit=commit)

    def as_json(self) -> dict[str, object]:
        """The log line's object: `from` for origin; the optional keys only when set."""
        record = asdict(self)
        record["from"] = record.pop("origin")
        return {key: value for key, value in record.items() if key not in _WHEN_SET or value is not None}
