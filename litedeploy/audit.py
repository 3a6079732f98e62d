"""The audit record: one per task that changed or tried to change a host, written once, at the end,
as a JSON line of the host's audit log (commands/audit.py appends it; releases.history reads it)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

# Written only when set, as the log has always had them.
_WHEN_SET = ("result", "error", "image", "previous_image", "rollback_to")
# The log's names for what runs, from before the systemd runtime (a venv is logged as `image` too).
_LOGGED_AS = {"runs": "image", "previous_runs": "previous_image"}


@dataclass
class AuditRecord:
    """`id` is also the release's name under the host's releases folder (`20261201T052233Z-1a2b3c`);
    `runs` is what runs after the task (`ServiceFile.served`: an image reference pinned to its digest,
    a venv); `result` is ok, failed or interrupted."""

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
    runs: str | None = None
    previous_runs: str | None = None
    rollback_to: str | None = None  # the release a rollback went back to

    @classmethod
    def begin(cls, action: str, host: str, commit: str | None, taker: Mapping[str, object]) -> AuditRecord:
        """The record of a task by the lock's TAKER (`locking.owner`: user, from), begun once it holds
        the lock: the id orders releases by when their deploys held the host, not by when they asked."""
        now = datetime.now(timezone.utc)
        return cls(id=now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6],
                   time=now.isoformat(timespec="seconds"), action=action, host=host, user=str(taker["user"]),
                   origin=str(taker["from"]), commit=commit)

    def as_json(self) -> dict[str, object]:
        """The log line's object, in the log's names and order (`image`, and `from` last); the
        optional keys only when set."""
        record = {_LOGGED_AS.get(key, key): value for key, value in asdict(self).items()}
        record["from"] = record.pop("origin")
        return {key: value for key, value in record.items() if key not in _WHEN_SET or value is not None}
