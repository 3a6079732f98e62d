"""Verification against a small HTTP server on loopback that answers as LiteLLM does: a draining
instance (503 shutting_down), Claude Code's request shape, what the smoke reads from the config."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from litedeploy.errors import VerifyError
from litedeploy.verify import (
    CLAUDE_CODE_BETAS,
    DRAINING,
    SmokePlan,
    claude_code_request,
    direct_gateway,
    smoke,
    wait_until_live,
)


class Answers(BaseHTTPRequestHandler):
    """Answers each path from the server's `answers` (status, body, content type); records requests."""

    def do_GET(self):
        self._answer()

    def do_POST(self):
        self._answer()

    def _answer(self):
        length = int(self.headers.get("Content-Length", 0))
        self.server.seen.append((self.path, dict(self.headers), self.rfile.read(length)))
        status, body, kind = self.server.answers.get(self.path.split("?")[0], (404, b"{}", "application/json"))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def litellm():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    server.answers, server.seen = {}, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def gateway_of(server):
    return direct_gateway("fox", f"http://127.0.0.1:{server.server_address[1]}", "sk-test")


SHUTTING_DOWN = (503, json.dumps({"status": "shutting_down"}).encode(), "application/json")


def test_a_draining_instance_is_named_as_draining_not_as_down(litellm):
    litellm.answers["/health/liveliness"] = SHUTTING_DOWN
    out = io.StringIO()
    with pytest.raises(VerifyError, match=r"did not answer /health/liveliness within 1 s \(503 shutting_down: this "
                                          r"instance is draining"):
        wait_until_live(gateway_of(litellm), 1, out)
    assert "an old instance is still draining (503 shutting_down)" in out.getvalue()


def test_a_door_that_answers_other_names_is_named_at_once(litellm):
    litellm.answers["/health/liveliness"] = (421, b"", "text/html")
    started = time.monotonic()
    with pytest.raises(VerifyError, match=r"^fox: the front door refused Host 127\.0\.0\.1:\d+ \(421\): it answers "
                                          r"other names than hosts.yaml's vars.server_names"):
        wait_until_live(gateway_of(litellm), 30, io.StringIO())
    assert time.monotonic() - started < 5


def test_the_smoke_says_draining_at_once(litellm):
    litellm.answers["/health/liveliness"] = litellm.answers["/health/readiness"] = SHUTTING_DOWN
    checks = {check.name: check for check in smoke(gateway_of(litellm), SmokePlan(["m"], None, False), [])}
    assert not checks["liveliness"].ok and checks["liveliness"].detail == DRAINING
    assert checks["liveliness"].seconds < 5  # not the 30 s wait for a gateway that may still be starting
    assert not checks["readiness"].ok and checks["readiness"].detail == DRAINING


def test_a_claude_code_request_carries_its_betas_a_tool_and_a_stream(litellm):
    stream = b"event: message_start\ndata: {}\n\nevent: content_block_delta\ndata: {}\n\nevent: message_stop\ndata: {}\n\n"
    litellm.answers["/v1/messages"] = (200, stream, "text/event-stream")
    assert claude_code_request(gateway_of(litellm), "claude-sonnet-4-5") == \
        "streamed 3 events (message_start .. message_stop)"
    path, headers, body = litellm.seen[-1]
    request = json.loads(body)
    assert path == "/v1/messages?beta=true" and headers["anthropic-beta"] == CLAUDE_CODE_BETAS
    assert request["stream"] is True and request["tools"][0]["name"] == "Read"
    assert headers["Authorization"] == "Bearer sk-test"


def test_a_claude_code_request_refused_names_the_model_and_the_header(litellm):
    error = {"error": {"message": "invalid beta flag"}}
    litellm.answers["/v1/messages"] = (400, json.dumps(error).encode(), "application/json")
    with pytest.raises(VerifyError, match=rf"fox: a Claude Code request to claude-opus-4-5 \(anthropic-beta: "
                                          rf"{CLAUDE_CODE_BETAS}\) answered 400: invalid beta flag"):
        claude_code_request(gateway_of(litellm), "claude-opus-4-5")


def test_the_smoke_plan_reads_redis_and_claude_ids_from_the_config():
    config = yaml.safe_dump({
        "model_list": [{"model_name": "claude-sonnet-4-5", "litellm_params": {"model": "x"}}],
        "router_settings": {"redis_host": "10.0.0.5", "redis_port": 6380,
                            "model_group_alias": {"claude-opus-5-5": {"model": "claude-sonnet-4-5", "hidden": True}}}})
    plan = SmokePlan.of(config)
    assert plan.redis == ("10.0.0.5", 6380) and plan.claude_code_model == "claude-sonnet-4-5"
    bare = SmokePlan.of(yaml.safe_dump({"model_list": [{"model_name": "m", "litellm_params": {"model": "x"}}]}))
    assert bare.redis is None and bare.claude_code_model is None


@pytest.mark.parametrize("router", [
    {"redis_host": "os.environ/REDIS_HOST"}, {"redis_host": "r", "redis_port": "os.environ/REDIS_PORT"},
    {"redis_host": "r", "redis_port": None}, {"redis_host": "r", "redis_password": "os.environ/OTHER"},
    {"redis_host": "r", "redis_ssl": True}, {"redis_url": "redis://r:6379"}])
def test_a_redis_the_admin_wrote_another_way_is_not_probed_nor_a_crash(router):
    config = yaml.safe_dump({"model_list": [{"model_name": "m", "litellm_params": {"model": "x"}}],
                             "router_settings": router})
    assert SmokePlan.of(config).redis is None


def test_a_stream_that_ends_in_an_error_event_fails(litellm):
    stream = (b"event: message_start\ndata: {}\n\nevent: error\n"
              b'data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n')
    litellm.answers["/v1/messages"] = (200, stream, "text/event-stream")
    with pytest.raises(VerifyError, match=r"streamed message_start, error and no message_stop: Overloaded"):
        claude_code_request(gateway_of(litellm), "claude-sonnet-4-5")


def test_the_redis_probe_runs_only_where_the_config_names_redis(litellm):
    asked = []
    litellm.answers["/health/liveliness"] = (200, b'"I\'m alive!"', "application/json")

    def probe(address, port):
        asked.append((address, port))
        raise VerifyError("AuthenticationError: invalid username-password pair")
    plan = SmokePlan(["m"], None, False, redis=("127.0.0.1", 6390))
    checks = smoke(gateway_of(litellm), plan, [], redis_probe=probe)
    assert asked == [("127.0.0.1", 6390)]
    assert [(c.ok, c.detail) for c in checks if c.name == "redis 127.0.0.1:6390"] == \
        [(False, "AuthenticationError: invalid username-password pair")]
    assert all(c.name != "redis 127.0.0.1:6390" for c in smoke(gateway_of(litellm), SmokePlan(["m"], None, False), [],
                                                                  redis_probe=probe))


@pytest.mark.parametrize("tunnels", [True, False])
def test_a_stream_sshd_will_not_open_is_a_refused_connection_which_every_wait_takes(tunnels):
    """sshd's MaxSessions reached while a wait polls, say: paramiko's SSHException would end the task
    with a traceback; as a ConnectionError it is one more answer not had yet."""
    import paramiko

    from litedeploy.remote import Remote

    class Transport:
        def open_channel(self, *args, **kwargs):
            raise paramiko.SSHException("Unable to open channel.")

        def open_session(self, *args, **kwargs):
            raise paramiko.ChannelException(1, "Administratively prohibited")

    remote = Remote.__new__(Remote)
    remote.tunnels_allowed = tunnels
    remote.connection = type("C", (), {"client": type("S", (), {"get_transport": lambda self: Transport()})()})()
    with pytest.raises(ConnectionError, match="127.0.0.1:4000: no (channel|session) for the stream"):
        remote.stream_to("127.0.0.1", 4000, 5, duplex=True)
