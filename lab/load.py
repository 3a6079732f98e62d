"""A team's steady load on a gateway: N clients, each sending chat requests one after another over a
kept-alive connection (as the OpenAI and Anthropic SDKs do), counting what was sent, what failed
and how long each took. Loopback or a namespace host's address only."""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Outcome:
    """One request: when it started and ended (time.monotonic), and why it failed (None: it did not)."""

    started: float
    ended: float
    error: str | None


@dataclass
class Load:
    """CLIENTS threads sending chat requests for MODEL to ADDRESS:PORT until `stop`."""

    address: str
    port: int
    master_key: str
    model: str
    clients: int = 4
    outcomes: list[Outcome] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._client, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> Load:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=60)
        return self

    def _client(self) -> None:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": "hello"}]}).encode()
        headers = {"Authorization": f"Bearer {self.master_key}", "Content-Type": "application/json"}
        connection = http.client.HTTPConnection(self.address, self.port, timeout=60)
        while not self._stopping.is_set():
            started = time.monotonic()
            error = None
            try:
                connection.request("POST", "/chat/completions", body, headers)
                reply = connection.getresponse()
                reply.read()
                if reply.status != 200:
                    error = f"HTTP {reply.status}"
            except (OSError, http.client.HTTPException) as exc:
                error = type(exc).__name__
                connection.close()  # the next request opens a new connection
            self.outcomes.append(Outcome(started, time.monotonic(), error))
            if error:
                time.sleep(0.05)  # a refused connection returns at once: no busy loop

    def during(self, start: float, end: float) -> list[Outcome]:
        """The requests that were in flight at some moment between START and END."""
        return [o for o in self.outcomes if o.ended >= start and o.started <= end]


def summary(outcomes: list[Outcome]) -> tuple[int, int, float]:
    """Requests sent, failed, and the 99th percentile of their latency in seconds."""
    latencies = sorted(o.ended - o.started for o in outcomes)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    return len(outcomes), sum(1 for o in outcomes if o.error), p99
