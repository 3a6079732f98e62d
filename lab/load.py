"""A team's steady load on a gateway: N clients, each sending chat requests one after another over a
kept-alive connection (as the OpenAI and Anthropic SDKs do); optionally STREAMS clients each holding
a streamed answer open (LiteLLM's mock_delay) one after another, and IDLE kept-alive connections
used once before and once after (`check_idle`), as an editor's connection pool leaves them. Counts
what was sent, what failed and how long each took; over HTTPS where given a TLS context.
Loopback or a namespace host's address only."""

from __future__ import annotations

import http.client
import json
import ssl
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
    """CLIENTS threads sending chat requests for MODEL to ADDRESS:PORT until `stop`; STREAMS threads
    holding streams of STREAM_SECONDS each (the gateway must allow mock_delay: allow_mock_testing);
    IDLE connections opened at `start`. TLS: the context of an HTTPS client, or None."""

    address: str
    port: int
    master_key: str
    model: str
    clients: int = 4
    streams: int = 0
    idle: int = 0
    tls: ssl.SSLContext | None = None
    stream_seconds: float = 15
    outcomes: list[Outcome] = field(default_factory=list)
    stream_outcomes: list[Outcome] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _idle: list[http.client.HTTPConnection] = field(default_factory=list)

    def start(self) -> Load:
        for _ in range(self.idle):
            connection = self._connection()
            connection.request("GET", "/health/liveliness")
            connection.getresponse().read()
            self._idle.append(connection)
        for target, count in ((self._client, self.clients), (self._streamer, self.streams)):
            for _ in range(count):
                thread = threading.Thread(target=target, daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> Load:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=self.stream_seconds + 60)
        return self

    def check_idle(self) -> list[str | None]:
        """Each idle connection's next request, on the connection it kept (http.client opens no other
        while it holds one): None where it was answered 200 (with `Connection: close` or not), else
        why not (a reset, a broken pipe, another status)."""
        errors = []
        for connection in self._idle:
            try:
                connection.request("GET", "/health/liveliness")
                reply = connection.getresponse()
                reply.read()
                errors.append(None if reply.status == 200 else f"HTTP {reply.status}")
            except (OSError, http.client.HTTPException) as exc:
                errors.append(type(exc).__name__)
            connection.close()
        return errors

    def _connection(self) -> http.client.HTTPConnection:
        if self.tls is None:
            return http.client.HTTPConnection(self.address, self.port, timeout=60)
        return http.client.HTTPSConnection(self.address, self.port, timeout=60, context=self.tls)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.master_key}", "Content-Type": "application/json"}

    def _client(self) -> None:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": "hello"}]}).encode()
        connection = self._connection()
        while not self._stopping.is_set():
            started = time.monotonic()
            error = None
            try:
                connection.request("POST", "/chat/completions", body, self._headers())
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

    def _streamer(self) -> None:
        body = json.dumps({"model": self.model, "stream": True, "mock_delay": self.stream_seconds,
                           "messages": [{"role": "user", "content": "hello"}]}).encode()
        while not self._stopping.is_set():
            started = time.monotonic()
            error = None
            connection = self._connection()
            try:
                connection.request("POST", "/chat/completions", body, self._headers())
                reply = connection.getresponse()
                text = reply.read().decode(errors="replace")
                if reply.status != 200 or not text.rstrip().endswith("data: [DONE]"):
                    error = f"HTTP {reply.status}" if reply.status != 200 else "cut short"
            except (OSError, http.client.HTTPException) as exc:
                error = type(exc).__name__
            finally:
                connection.close()
            self.stream_outcomes.append(Outcome(started, time.monotonic(), error))
            if error:
                time.sleep(0.05)

    def during(self, start: float, end: float, streams: bool = False) -> list[Outcome]:
        """The requests (or STREAMS) that were in flight at some moment between START and END."""
        return [o for o in (self.stream_outcomes if streams else self.outcomes) if o.ended >= start and o.started <= end]


def summary(outcomes: list[Outcome]) -> tuple[int, int, float]:
    """Requests sent, failed, and the 99th percentile of their latency in seconds."""
    latencies = sorted(o.ended - o.started for o in outcomes)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    return len(outcomes), sum(1 for o in outcomes if o.error), p99


def handshake_cost(address: str, port: int, tls: ssl.SSLContext | None, rounds: int = 100) -> float:
    """Milliseconds, on average over ROUNDS, of a new connection's first answer (/health/liveliness):
    with TLS it includes the handshake, so the difference of the two is the handshake's cost."""
    started = time.monotonic()
    for _ in range(rounds):
        connection = (http.client.HTTPSConnection(address, port, timeout=10, context=tls) if tls
                      else http.client.HTTPConnection(address, port, timeout=10))
        connection.request("GET", "/health/liveliness", headers={"Connection": "close"})
        connection.getresponse().read()
        connection.close()
    return (time.monotonic() - started) / rounds * 1000
