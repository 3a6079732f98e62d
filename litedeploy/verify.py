"""Proof the gateway answers: liveliness, readiness, auth, the models it lists, chat answers, the
fallback path.

By default requests travel through the task's own SSH connection (a direct-tcpip channel, or a bash
relay over exec where sshd forbids tunnels), so they work where the gateway's port is firewalled and
open no second connection; `--direct URL` goes straight to the gateway from here instead.
LiteLLM's `/health` is never called: it makes a billed call to every model.
"""

from __future__ import annotations

import datetime
import http.client
import io
import json
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

import yaml

from .errors import VerifyError
from .facts import GatewayState
from .tls import URGENT_DAYS, Certificate, TLSStream, client_context, from_der

if TYPE_CHECKING:
    from .remote import Remote

REQUEST_TIMEOUT = 30
Stream = Any  # a connected socket or paramiko channel: sendall, makefile, settimeout, close


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass(frozen=True)
class Gateway:
    """The LiteLLM HTTP API of one host: `connect` opens a fresh stream to it for each request."""

    name: str
    connect: Callable[[float], Stream]
    host_header: str
    master_key: str

    def request(self, method: str, path: str, body: dict | None = None, *, auth: bool = True,
                key: str | None = None, timeout: float = REQUEST_TIMEOUT,
                headers: dict[str, str] | None = None) -> Response:
        """One request on its own stream, closed only after the whole body is read (http.client's
        connection object would close a channel on `Connection: close` before that)."""
        return self.exchange(method, path, body, auth=auth, key=key, timeout=timeout, headers=headers)[0]

    def exchange(self, method: str, path: str, body: dict | None = None, *, auth: bool = True,
                 key: str | None = None, timeout: float = REQUEST_TIMEOUT,
                 headers: dict[str, str] | None = None) -> tuple[Response, Certificate | None]:
        """`request`, and the certificate its stream's handshake verified (None: plain HTTP)."""
        payload = json.dumps(body).encode() if body is not None else b""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}", "Content-Type: application/json",
                 f"Content-Length: {len(payload)}", "Connection: close",
                 *(f"{name}: {value}" for name, value in (headers or {}).items())]
        if auth:
            lines.append(f"Authorization: Bearer {key or self.master_key}")
        stream = self.connect(timeout)
        try:
            certificate = stream.certificate() if isinstance(stream, TLSStream) else \
                from_der(stream.getpeercert(binary_form=True) or b"") if isinstance(stream, ssl.SSLSocket) else None
            stream.settimeout(timeout)
            stream.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + payload)
            reply = http.client.HTTPResponse(stream)
            reply.begin()
            return Response(reply.status, reply.read(), {k.lower(): v for k, v in reply.getheaders()}), certificate
        finally:
            stream.close()


def served_certificate(gateway: Gateway, timeout: float = REQUEST_TIMEOUT) -> Certificate | None:
    """The certificate the gateway's port serves, as a handshake verified it, or None where it
    speaks plain HTTP. Raises OSError (ssl.SSLError among them) where no handshake succeeds. A
    request (liveliness) goes on the stream and is answered whole: a stream left open after the
    handshake holds the door's connection for its http-request timeout, and over SSH one of sshd's
    sessions (MaxSessions, 10 by default: a wait that polls ran out of them)."""
    return gateway.exchange("GET", "/health/liveliness", auth=False, timeout=timeout)[1]


def certificate_line(certificate: Certificate, now: datetime.datetime) -> str:
    """NAMES by ISSUER, N days left (until DATE): what ops.status and ops.smoke say of it."""
    return (f"{', '.join(certificate.names)} by {certificate.issuer}, {certificate.days_left(now)} days left "
            f"(until {certificate.not_after:%Y-%m-%d})")


def tunnel_gateway(remote: Remote, address: str, port: int, host_header: str, master_key: str,
                   https: tuple[str, str | None] | None = None) -> Gateway:
    """The gateway at ADDRESS:PORT as the host sees it, through the task's connection, asked for
    by HOST_HEADER (`frontdoor.host_header`); over TLS where HTTPS (`frontdoor.https`: the name its
    certificate must cover, the CA file trusted besides the system's) is given."""
    if https is None:
        return Gateway(remote.host.name, lambda timeout: remote.stream_to(address, port, timeout), host_header,
                       master_key)
    name, ca_file = https
    context = client_context(ca_file)

    def connect(timeout: float) -> Stream:
        return TLSStream(remote.stream_to(address, port, timeout, duplex=True), context, name)
    return Gateway(remote.host.name, connect, host_header, master_key)


def direct_gateway(name: str, url: str, master_key: str, ca_file: str | None = None) -> Gateway:
    """Straight to URL (http or https) from this machine, as the source documents' curl does; an
    https URL trusted as `tls.client_context` trusts (the system's CAs and CA_FILE)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise VerifyError(f"{name}: --direct needs an http:// or https:// URL, not {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)

    def connect(timeout: float) -> Stream:
        stream = socket.create_connection((parts.hostname, port), timeout=timeout)
        if parts.scheme == "https":
            stream = client_context(ca_file).wrap_socket(stream, server_hostname=parts.hostname)
        return stream
    return Gateway(name, connect, parts.netloc, master_key)


def is_draining(reply: Response) -> bool:
    """LiteLLM's answer once its graceful shutdown began (SIGTERM, or /health/drain): 503
    `{"status": "shutting_down"}` on /health/liveliness and /health/readiness, while it finishes
    the requests it holds (litellm/proxy/health_endpoints/_health_endpoints.py, 1.106 to 1.110)."""
    data = reply.json()
    return reply.status == 503 and isinstance(data, dict) and data.get("status") == "shutting_down"


def liveliness(gateway: Gateway) -> Response | None:
    """One /health/liveliness answer (no key needed), or None where nothing answers (5 s at most)."""
    try:
        return gateway.request("GET", "/health/liveliness", auth=False, timeout=5)
    except (OSError, http.client.HTTPException):
        return None


def draining(gateway: Gateway) -> bool:
    """The instance answering is draining: it takes no new work once its requests are done."""
    reply = liveliness(gateway)
    return reply is not None and is_draining(reply)


DRAINING = ("503 shutting_down: this instance is draining (it finishes the requests it holds, then "
            "stops); a restart replaces it (inv compose.restart)")


def certificate_refused(gateway: Gateway, error: ssl.SSLCertVerificationError) -> VerifyError:
    """A certificate the door serves that its clients would refuse: no wait mends it."""
    return VerifyError(f"{gateway.name}: the front door's certificate is refused: {error.verify_message}; see vars.tls")


def wait_until_live(gateway: Gateway, timeout: float, out: TextIO = sys.stderr,
                    watch: Callable[[], str | None] | None = None) -> float:
    """Seconds until /health/liveliness answered 200; a progress line shows the wait. A 503
    `shutting_down` is an old instance still draining, not a failed new one: the wait goes on.
    `watch` is asked every few seconds whether the container has failed, so a crash loop ends the
    wait early instead of after the whole timeout (`docker ps` shows a crash-looping container as Up)."""
    start = time.monotonic()
    next_report = next_watch = 0.0
    old = False  # the last answer came from an instance draining
    while True:
        waited = time.monotonic() - start
        try:
            reply = gateway.request("GET", "/health/liveliness", auth=False, timeout=5)
            if reply.status == 200:
                return waited
            if reply.status == 421:  # no wait mends it: the door answers other names than ours
                raise VerifyError(f"{gateway.name}: the front door refused Host {gateway.host_header} (421): it "
                                  "answers other names than hosts.yaml's vars.server_names; a deploy makes them so")
            old = is_draining(reply)
        except ssl.SSLCertVerificationError as error:  # no wait mends it either
            raise certificate_refused(gateway, error) from None
        except (OSError, http.client.HTTPException):
            old = False  # not listening yet: the container is still starting
        if waited > timeout:
            raise VerifyError(f"{gateway.name}: litellm did not answer /health/liveliness within {timeout:.0f} s"
                              + (f" ({DRAINING})" if old else ""))
        if watch and waited >= next_watch:
            failure = watch()
            if failure:
                raise VerifyError(f"{gateway.name}: {failure}")
            next_watch += 2
        if waited >= next_report:
            state = ": an old instance is still draining (503 shutting_down)" if old else ""
            out.write(f"{gateway.name}: waiting for litellm to answer ({waited:.0f}s of {timeout:.0f}s){state}\n")
            out.flush()
            next_report += 5
        time.sleep(0.5)


def wait_for_certificate(gateway: Gateway, wanted: Certificate, timeout: float) -> float:
    """Seconds until a fresh handshake gets WANTED (a reloaded proxy's new worker takes the next
    connection) and /health/liveliness answers 200 through it. Raises VerifyError after TIMEOUT
    seconds, naming what was served, or at once for a certificate clients would refuse."""
    start, last = time.monotonic(), "no answer"
    while True:
        try:
            reply, served = gateway.exchange("GET", "/health/liveliness", auth=False, timeout=5)
            if served == wanted and reply.status == 200:
                return time.monotonic() - start
            last = f"HTTP {reply.status} with the certificate until {served.not_after:%Y-%m-%d}" if served else \
                "plain HTTP"
        except ssl.SSLCertVerificationError as error:
            raise certificate_refused(gateway, error) from None
        except (OSError, http.client.HTTPException) as exc:
            last = f"no answer ({exc})"
        if time.monotonic() - start > timeout:
            raise VerifyError(f"{gateway.name}: the proxy did not serve the new certificate within {timeout:.0f} s: "
                              f"{last}")
        time.sleep(0.3)


def wait_for_instance(gateway: Gateway, header: str, instance: str, timeout: float,
                      watch: Callable[[], str | None] = lambda: None) -> float:
    """Seconds until a fresh connection's /health/liveliness answers 200 from INSTANCE, as the
    proxy's HEADER names it: a reloaded proxy's new worker takes the next connection, or a started
    one binds the port. Raises VerifyError after TIMEOUT seconds, naming the last answer, or as
    soon as WATCH (asked each second) says why the proxy cannot answer."""
    start = time.monotonic()
    last = "no answer"
    asked = start
    while True:
        if time.monotonic() - asked >= 1:
            asked = time.monotonic()
            down = watch()
            if down:
                raise VerifyError(f"{gateway.name}: the proxy did not forward to {instance}: {down}")
        try:
            reply = gateway.request("GET", "/health/liveliness", auth=False, timeout=5)
            if reply.status == 200 and reply.headers.get(header.lower()) == instance:
                return time.monotonic() - start
            last = f"HTTP {reply.status} from {reply.headers.get(header.lower()) or 'no instance'}"
        except ssl.SSLCertVerificationError as error:
            raise certificate_refused(gateway, error) from None
        except (OSError, http.client.HTTPException) as exc:
            last = f"no answer ({exc})"
        if time.monotonic() - start > timeout:
            raise VerifyError(f"{gateway.name}: the proxy did not forward to {instance} within {timeout:.0f} s: {last}")
        time.sleep(0.2)


def gateway_failure(state: GatewayState | None, baseline: GatewayState | None) -> str | None:
    """Why the gateway (a container, a unit) counts as failed, or None while it may still be starting."""
    if state is None:
        return f"the litellm {baseline.kind if baseline else 'container'} is gone"
    restarts = state.restart_count - (baseline.restart_count if baseline else 0)
    # Docker's words for a container that is down, then systemd's for a unit.
    if state.status in ("restarting", "exited", "dead", "failed", "auto-restart", "inactive") or restarts > 0:
        return (f"the litellm {state.kind} is crash-looping (status {state.status}, exit code "
                f"{state.exit_code}, {max(restarts, 0)} restarts since the deploy)")
    return None


def listed_models(gateway: Gateway) -> list[str]:
    reply = gateway.request("GET", "/v1/models")
    if reply.status != 200:
        raise VerifyError(f"{gateway.name}: /v1/models answered {reply.status}{_error_of(reply)}")
    return [entry["id"] for entry in (reply.json() or {}).get("data", [])]


def check_models(gateway: Gateway, plan: SmokePlan) -> list[str]:
    """The gateway must list exactly the configured models (and may list their aliases): a missing
    one was dropped by LiteLLM (an unknown provider prefix is dropped silently), an extra one is not ours."""
    listed = listed_models(gateway)
    missing = [name for name in plan.models if name not in listed]
    extra = [name for name in listed if name not in plan.models and name not in plan.aliases]
    if missing:
        raise VerifyError(f"{gateway.name}: /v1/models does not list {', '.join(missing)}")
    if extra:
        raise VerifyError(f"{gateway.name}: /v1/models lists models not configured: {', '.join(extra)}")
    return listed


def chat(gateway: Gateway, model: str, **extra: Any) -> Response:
    reply = gateway.request("POST", "/v1/chat/completions",
                            {"model": model, "messages": [{"role": "user", "content": "ping"}],
                             "max_tokens": 16, **extra})
    data = reply.json() or {}
    if reply.status != 200 or not data.get("choices"):
        raise VerifyError(f"{gateway.name}: chat with {model} answered {reply.status}{_error_of(reply)}")
    return reply


def messages(gateway: Gateway, model: str) -> str:
    """Anthropic's Messages API, as Claude Code calls it: LiteLLM translates it for any provider."""
    reply = gateway.request("POST", "/v1/messages", {"model": model, "max_tokens": 16,
                                                     "messages": [{"role": "user", "content": "ping"}]})
    data = reply.json() or {}
    texts = [part.get("text", "") for part in data.get("content") or [] if isinstance(part, dict)]
    if reply.status != 200 or not texts:
        raise VerifyError(f"{gateway.name}: /v1/messages with {model} answered {reply.status}{_error_of(reply)}")
    return texts[0]


# What Claude Code 2.1.332 sends on every request, measured against LiteLLM: its betas (a subset;
# the ones every model family gets), the API version, a tool, a stream.
CLAUDE_CODE_BETAS = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27"
CLAUDE_CODE_TOOL = {"name": "Read", "description": "Read a file from the local filesystem.",
                    "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}},
                                     "required": ["file_path"]}}


def claude_code_request(gateway: Gateway, model: str) -> str:
    """A request shaped like Claude Code's (`POST /v1/messages?beta=true` with its anthropic-beta
    header, a tool, streaming): a plain /v1/messages can pass where a beta flag or a tool makes the
    provider answer 400. The 400 names the model and the header."""
    reply = gateway.request("POST", "/v1/messages?beta=true",
                            {"model": model, "max_tokens": 32, "stream": True, "tools": [CLAUDE_CODE_TOOL],
                             "messages": [{"role": "user", "content": "ping"}]},
                            headers={"anthropic-beta": CLAUDE_CODE_BETAS, "anthropic-version": "2023-06-01"})
    if reply.status != 200:
        raise VerifyError(f"{gateway.name}: a Claude Code request to {model} (anthropic-beta: {CLAUDE_CODE_BETAS}) "
                          f"answered {reply.status}{_error_of(reply)}")
    events = [line.removeprefix("event: ") for line in reply.body.decode(errors="replace").splitlines()
              if line.startswith("event: ")]
    if "error" in events or (events and "message_stop" not in events):
        raise VerifyError(f"{gateway.name}: a Claude Code request to {model} (anthropic-beta: {CLAUDE_CODE_BETAS}) "
                          f"streamed {', '.join(events[-3:])} and no message_stop{_stream_error(reply)}")
    if events:
        return f"streamed {len(events)} events ({events[0]} .. {events[-1]})"
    data = reply.json() or {}  # a mock_response answers whole, not streamed (LiteLLM 1.106)
    if not isinstance(data, dict) or not data.get("content"):
        raise VerifyError(f"{gateway.name}: a Claude Code request to {model} answered neither a stream nor a message")
    return "answered (not streamed: a mock_response)"


def _stream_error(reply: Response) -> str:
    """The message of a stream's `error` event (Anthropic's SSE error shape), if it has one."""
    for line in reply.body.decode(errors="replace").splitlines():
        if line.startswith("data: ") and '"error"' in line:
            return _error_of(Response(reply.status, line.removeprefix("data: ").encode()))
    return ""


def _error_of(reply: Response) -> str:
    data = reply.json()
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return f": {str(message)[:200]}" if message else ""


@dataclass(frozen=True)
class SmokePlan:
    """What to prove, read from the config the repo renders for the host."""

    models: list[str]
    fallback_from: str | None  # a model with fallbacks configured
    mock_fallbacks_allowed: bool
    # router_settings.model_group_alias: other names for configured models (a hidden one is not listed).
    aliases: tuple[str, ...] = ()
    # The Redis the router counts limits in (router_settings.redis_host, redis_port), if any.
    redis: tuple[str, int] | None = None

    # The model Claude's ids reach (router_settings.model_group_alias), if any: Claude Code is a client.
    claude_code_model: str | None = None

    @classmethod
    def of(cls, config_text: str) -> SmokePlan:
        config = yaml.safe_load(config_text) or {}
        # A name served by several deployments (load balancing, Ollama backends) is one model.
        models = list(dict.fromkeys(m["model_name"] for m in config.get("model_list") or []))
        rules = [rule for section in ("router_settings", "litellm_settings")
                 for rule in (config.get(section) or {}).get("fallbacks") or [] if isinstance(rule, dict)]
        allowed = bool((config.get("general_settings") or {}).get("dangerously_allow_mock_testing_request_params"))
        router = config.get("router_settings") or {}
        group_alias = router.get("model_group_alias") or {}
        targets = [target.get("model") if isinstance(target, dict) else target
                   for alias, target in group_alias.items() if str(alias).startswith("claude-")]
        claude = next((target for target in targets if target in models), None)
        return cls(models, next(iter(rules[0])) if rules else None, allowed, tuple(group_alias), _redis_of(router),
                   claude)


def _redis_of(router: dict) -> tuple[str, int] | None:
    """The Redis litedeploy wrote from vars.redis (a literal host and port, the password from
    REDIS_PASSWORD, no TLS), which the probe can ask as the gateway does; None for any other shape
    (os.environ/ references, another password variable, redis_url), which it leaves alone."""
    host, port = router.get("redis_host"), router.get("redis_port", 6379)
    if not isinstance(host, str) or host.startswith("os.environ/") or type(port) is not int:
        return None
    if router.get("redis_password", "os.environ/REDIS_PASSWORD") != "os.environ/REDIS_PASSWORD" or router.get("redis_ssl"):
        return None
    return host, port


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float
    skipped: bool = False


def smoke(gateway: Gateway, plan: SmokePlan, chat_models: list[str], messages_model: str | None = None,
          redis_probe: Callable[[str, int], str] | None = None, https: bool = False) -> list[Check]:
    """Each check runs even when an earlier one failed, so the table shows the whole picture.
    With `messages_model`, Anthropic's /v1/messages is proven too (one more model call), and where
    Claude's ids reach the gateway a request shaped like Claude Code's. With `redis_probe` (run
    beside the gateway, with its environment) the Redis of router_settings answers the gateway:
    LiteLLM falls back to counting limits per instance, silently, when it cannot reach it. With
    HTTPS (vars.tls, or an https:// --direct URL) the certificate comes first: its chain and name
    as a client verifies them, and its expiry (`tls.URGENT_DAYS`)."""
    def liveliness() -> str:
        if draining(gateway):
            raise VerifyError(DRAINING)
        return f"answered in {wait_until_live(gateway, REQUEST_TIMEOUT, io.StringIO()):.1f} s"

    def readiness() -> str:
        reply = gateway.request("GET", "/health/readiness", auth=False)
        if reply.status != 200:
            raise VerifyError(DRAINING if is_draining(reply) else f"answered {reply.status}")
        return str((reply.json() or {}).get("status", "ok"))

    def auth_enforced() -> str:
        status = gateway.request("GET", "/v1/models", auth=False).status
        if status == 200:
            raise VerifyError("answered /v1/models without a key")
        return f"no key -> {status}"

    def models() -> str:
        aliases = len(check_models(gateway, plan)) - len(plan.models)
        return f"exactly the {len(plan.models)} configured models" + (f" and {aliases} aliases" if aliases else "")

    def answer(model: str) -> Callable[[], str]:
        return lambda: repr(chat(gateway, model).json()["choices"][0]["message"]["content"][:60])

    def fallback(model: str) -> str:
        reply = chat(gateway, model, mock_testing_fallbacks=True)
        attempted = reply.headers.get("x-litellm-attempted-fallbacks", "0")
        if attempted in ("", "0"):
            raise VerifyError("answered without trying a fallback")
        return f"answered by {reply.json().get('model')} after {attempted} fallback(s)"

    def certificate() -> str:
        served = served_certificate(gateway)
        if served is None:
            raise VerifyError("the port speaks plain HTTP: every key and prompt crosses the network readable")
        now = datetime.datetime.now(datetime.timezone.utc)
        if served.days_left(now) < URGENT_DAYS:
            raise VerifyError(f"{certificate_line(served, now)}: renew it now")
        return f"chain and name verified: {certificate_line(served, now)}"

    # A window as long as one request may take: on a loaded host a relay alone can take seconds.
    checks = [("certificate", certificate)] if https else []
    checks += [("liveliness", liveliness), ("readiness", readiness), ("auth enforced", auth_enforced),
              ("models", models)]
    checks += [(f"chat {model}", answer(model)) for model in chat_models]
    if messages_model:
        checks.append((f"messages {messages_model}", lambda: repr(messages(gateway, messages_model)[:60])))
    if messages_model and plan.claude_code_model:
        claude = plan.claude_code_model
        checks.append((f"claude code {claude}", lambda: claude_code_request(gateway, claude)))
    if plan.redis and redis_probe:
        address, port = plan.redis
        checks.append((f"redis {address}:{port}", lambda: redis_probe(address, port)))
    results = [_timed(name, probe) for name, probe in checks]
    if plan.fallback_from and plan.mock_fallbacks_allowed:
        results.append(_timed(f"fallback from {plan.fallback_from}", partial(fallback, plan.fallback_from)))
    elif plan.fallback_from:
        results.append(Check(f"fallback from {plan.fallback_from}", True,
                             "skipped: the host does not allow mock_testing_fallbacks", 0.0, skipped=True))
    return results


def _timed(name: str, probe: Callable[[], str]) -> Check:
    start = time.monotonic()
    try:
        detail, ok = probe(), True
    except (VerifyError, OSError, http.client.HTTPException) as exc:
        detail, ok = str(exc).removeprefix("VerifyError: "), False
    return Check(name, ok, detail, time.monotonic() - start)
