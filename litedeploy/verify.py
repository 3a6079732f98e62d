"""Proof the gateway answers: liveliness, the models it lists, a chat answer.

Requests travel through the deploy's own SSH connection (a direct-tcpip channel), so they work where
the gateway's port is firewalled and open no second connection. LiteLLM's `/health` is never called:
it makes a billed call to every model.
"""

from __future__ import annotations

import http.client
import io
import json
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, TextIO

from .errors import VerifyError
from .facts import ContainerState
from .inventory import Host
from .remote import Remote

REQUEST_TIMEOUT = 30


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class Gateway:
    """The LiteLLM HTTP API of one host, reached through its SSH connection."""

    remote: Remote
    master_key: str

    def request(self, method: str, path: str, body: dict | None = None, *, auth: bool = True,
                timeout: float = REQUEST_TIMEOUT) -> Response:
        """One request on its own channel. The channel is closed only after the whole body is read:
        http.client's connection object would close it on `Connection: close` before that."""
        payload = json.dumps(body).encode() if body is not None else b""
        headers = [f"{method} {path} HTTP/1.1", f"Host: {self.remote.host.local_address}",
                   "Content-Type: application/json", f"Content-Length: {len(payload)}", "Connection: close"]
        if auth:
            headers.append(f"Authorization: Bearer {self.master_key}")
        channel = self.remote.tunnel(self.remote.host.port, timeout)
        try:
            channel.settimeout(timeout)
            channel.sendall("\r\n".join(headers).encode() + b"\r\n\r\n" + payload)
            reply = http.client.HTTPResponse(channel)
            reply.begin()
            return Response(reply.status, reply.read())
        finally:
            channel.close()


def wait_until_live(gateway: Gateway, timeout: float, out: TextIO = sys.stderr,
                    watch: Callable[[], str | None] | None = None) -> float:
    """Seconds until /health/liveliness answered 200; a progress line shows the wait. `watch` is
    asked every few seconds whether the container has failed, so a crash loop ends the wait early
    instead of after the whole timeout (`docker ps` shows a crash-looping container as Up)."""
    host = gateway.remote.host
    start = time.monotonic()
    next_report = next_watch = 0.0
    while True:
        waited = time.monotonic() - start
        try:
            if gateway.request("GET", "/health/liveliness", auth=False, timeout=5).status == 200:
                return waited
        except (OSError, http.client.HTTPException):
            pass  # not listening yet: the container is still starting
        if waited > timeout:
            raise VerifyError(f"{host.name}: litellm did not answer /health/liveliness within {timeout:.0f} s")
        if watch and waited >= next_watch:
            failure = watch()
            if failure:
                raise VerifyError(f"{host.name}: {failure}")
            next_watch += 2
        if waited >= next_report:
            out.write(f"{host.name}: waiting for litellm to answer ({waited:.0f}s of {timeout:.0f}s)\n")
            out.flush()
            next_report += 5
        time.sleep(0.5)


def container_failure(state: ContainerState | None, baseline: ContainerState | None) -> str | None:
    """Why the container counts as failed, or None while it may still be starting."""
    if state is None:
        return "the litellm container is gone"
    restarts = state.restart_count - (baseline.restart_count if baseline else 0)
    if state.status in ("restarting", "exited", "dead") or restarts > 0:
        return (f"the litellm container is crash-looping (status {state.status}, exit code "
                f"{state.exit_code}, {max(restarts, 0)} restarts since the deploy)")
    return None


def listed_models(gateway: Gateway) -> list[str]:
    reply = gateway.request("GET", "/v1/models")
    if reply.status != 200:
        raise VerifyError(f"{gateway.remote.host.name}: /v1/models answered {reply.status}")
    return [entry["id"] for entry in (reply.json() or {}).get("data", [])]


def check_models(gateway: Gateway, host: Host) -> list[str]:
    listed = listed_models(gateway)
    missing = [name for name in host.models if name not in listed]
    if missing:
        raise VerifyError(f"{host.name}: /v1/models does not list {', '.join(missing)}")
    return listed


def chat(gateway: Gateway, model: str) -> str:
    reply = gateway.request("POST", "/v1/chat/completions",
                            {"model": model, "messages": [{"role": "user", "content": "ping"}],
                             "max_tokens": 16})
    data = reply.json() or {}
    if reply.status != 200 or not data.get("choices"):
        error = (data.get("error") or {}).get("message", "") if isinstance(data, dict) else ""
        raise VerifyError(f"{gateway.remote.host.name}: chat with {model} answered {reply.status} "
                          f"{str(error)[:200]}".rstrip())
    return str(data["choices"][0]["message"]["content"])


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float


def smoke(gateway: Gateway, host: Host) -> list[Check]:
    """Each check runs even when an earlier one failed, so the table shows the whole picture."""
    def readiness() -> str:
        reply = gateway.request("GET", "/health/readiness", auth=False)
        if reply.status != 200:
            raise VerifyError(f"answered {reply.status}")
        return str((reply.json() or {}).get("status", "ok"))

    def models() -> str:
        return f"{len(check_models(gateway, host))} listed, all {len(host.models)} configured present"

    first = host.models[0]
    checks = [("liveliness", lambda: f"answered in {wait_until_live(gateway, 10, io.StringIO()):.1f} s"),
              ("readiness", readiness),
              ("models", models),
              (f"chat {first}", lambda: repr(chat(gateway, first)[:60]))]
    return [_timed(name, probe) for name, probe in checks]


def _timed(name: str, probe: Callable[[], str]) -> Check:
    start = time.monotonic()
    try:
        detail, ok = probe(), True
    except (VerifyError, OSError, http.client.HTTPException) as exc:
        detail, ok = str(exc), False
    return Check(name, ok, detail, time.monotonic() - start)
