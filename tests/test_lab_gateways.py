"""Two gateways behind one address sharing limits through a real redis-server, the clients teams
use (Claude Code's /v1/messages, Cline, OpenAI SDKs) with the settings `ops.endpoints` prints, and
the daily operations: audit, exec, lock. All through the lab's real sshd, dockerd and LiteLLM."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from conftest import LAB_STATE, encrypt_for_lab, free_port, lab_secrets, make_lab_host

from lab import claude_code
from lab.process import listening, wait

pytestmark = pytest.mark.lab
COMPOSE_FLAVOURS = ("v2",)  # the compose flavour plays no part here; every other module covers both

LIMITED = "claude-sonnet-4"  # 2 requests a minute, counted in Redis across both gateways
REDIS_PASSWORD = "redis-lab-password-1"


@pytest.fixture(scope="module")
def redis_port(lab, tmp_path_factory):
    """A real redis-server on a loopback port of its own, with a password, keeping nothing on disk."""
    port, folder = free_port(), tmp_path_factory.mktemp("redis")
    server = subprocess.Popen([shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port),
                               "--bind", "127.0.0.1", "--requirepass", REDIS_PASSWORD, "--save", "",
                               "--appendonly", "no", "--dir", str(folder)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait(lambda: listening("127.0.0.1", port), 10, "redis-server did not start")
    yield port
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="module")
def gateways(lab, tmp_path_factory, redis_port):
    secrets = encrypt_for_lab(lab_secrets(REDIS_PASSWORD=REDIS_PASSWORD),
                              tmp_path_factory.mktemp("gateway-secrets") / "secrets.enc.yaml")
    hosts = []
    for name in ("gw-a", "gw-b"):
        host = make_lab_host(lab, tmp_path_factory.mktemp(name), name)
        host.write_inventory({"secrets_file": str(secrets)},
                             models=[{"name": "claude-3-7-sonnet"}, {"name": LIMITED, "rpm": 2},
                                     {"name": "claude-opus-4-5"}, {"name": "claude-haiku-4-5"}],
                             redis={"host": "127.0.0.1", "port": redis_port, "password": True},
                             router_settings={"num_retries": 0}, anthropic_model_ids=True,
                             general_settings={"enable_drain_endpoint": True})
        deployed = host.run("deploy", "--host", host.name)
        assert deployed.returncode == 0, deployed.stderr
        hosts.append(host)
    yield hosts
    for host in hosts:
        host.remove_container()


def post(url: str, key: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as error:
        return error.code, {}


def chat_status(host, model: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return post(f"http://127.0.0.1:{host.port}/v1/chat/completions", lab_secrets()["LITELLM_MASTER_KEY"], body)[0]


def test_two_gateways_share_one_rate_limit_through_redis(gateways):
    """The first gateway is used up to its limit; the second must then refuse before it has answered
    its own 2: only a count kept in Redis can tell it about the first one's requests. LiteLLM writes
    counts to Redis in batches (every 0.1 s, later under load), so the second is asked after a pause."""
    first, second = gateways
    if time.gmtime().tm_sec > 40:  # LiteLLM counts per clock minute: stay inside one
        time.sleep(61 - time.gmtime().tm_sec)
    answered = 0
    while chat_status(first, LIMITED) == 200:
        answered += 1
        assert answered <= 2, "the rpm limit of 2 is not enforced at all"
    assert answered >= 1
    own = 0
    time.sleep(2)
    while chat_status(second, LIMITED) == 200:
        own += 1
        assert own < 2, "the second gateway answered its own 2 requests: the limit is not shared"
        time.sleep(2)
    assert chat_status(second, "claude-3-7-sonnet") == 200  # an unlimited model still answers


def exports(text: str) -> dict[str, str]:
    return dict(shlex.split(line.removeprefix("export "))[0].split("=", 1)
                for line in text.splitlines() if line.startswith("export "))


def test_claude_code_settings_from_endpoints_reach_the_messages_api(gateways):
    host = gateways[0]
    run = host.run("ops.endpoints", "--host", host.name, "--client", "claude-code", "--show-key")
    assert run.returncode == 0, run.stderr
    settings = exports(run.stdout)
    assert settings["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{host.port}"
    body = {"model": settings["ANTHROPIC_MODEL"], "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    status, answer = post(settings["ANTHROPIC_BASE_URL"] + "/v1/messages", settings["ANTHROPIC_AUTH_TOKEN"], body)
    assert status == 200 and answer["content"][0]["text"] == "lab mock: hello from LiteLLM"
    # The id Claude Code sends for Claude 3.7 Sonnet reaches the configured model of that name.
    status, answer = post(settings["ANTHROPIC_BASE_URL"] + "/v1/messages", settings["ANTHROPIC_AUTH_TOKEN"],
                          {**body, "model": "claude-3-7-sonnet-20250219"})
    assert status == 200, answer


def test_openai_and_cline_settings_from_endpoints_reach_chat(gateways):
    host = gateways[0]
    openai = exports(host.run("ops.endpoints", "--host", host.name, "--client", "openai", "--show-key").stdout)
    body = {"model": "claude-3-7-sonnet", "messages": [{"role": "user", "content": "hi"}]}
    assert post(openai["OPENAI_BASE_URL"] + "/chat/completions", openai["OPENAI_API_KEY"], body)[0] == 200
    cline = host.run("ops.endpoints", "--host", host.name, "--client", "cline").stdout
    assert f"Base URL:  http://127.0.0.1:{host.port}" in cline and "API Key:   ********" in cline
    assert lab_secrets()["LITELLM_MASTER_KEY"] not in cline


def test_the_smoke_proves_the_messages_api_claude_codes_request_and_redis(gateways, redis_port):
    host = gateways[1]
    run = host.run("ops.smoke", "--host", host.name)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    for check in ("messages claude-3-7-sonnet", "claude code claude-3-7-sonnet", f"redis 127.0.0.1:{redis_port}"):
        assert any(" ok  " in line and check in line for line in lines), run.stdout
    assert any("PONG, with a password" in line for line in lines)


def test_a_gateway_whose_redis_password_is_wrong_is_not_deployed(lab, tmp_path, redis_port):
    """LiteLLM starts and answers with a Redis it cannot use, counting limits per instance: the
    deploy's smoke asks Redis from inside the container, fails and takes the new gateway away."""
    wrong = "not-the-redis-password-9"
    secrets = encrypt_for_lab(lab_secrets(REDIS_PASSWORD=wrong), tmp_path / "secrets.enc.yaml")
    host = make_lab_host(lab, tmp_path, "gw-wrong-redis")
    host.write_inventory({"secrets_file": str(secrets)}, models=[{"name": LIMITED, "rpm": 2}],
                         redis={"host": "127.0.0.1", "port": redis_port, "password": True})
    try:
        run = host.run("deploy", "--host", host.name)
        assert run.returncode == 1
        assert (f"redis 127.0.0.1:{redis_port}: the gateway cannot use Redis at 127.0.0.1:{redis_port} with its "
                "REDIS_PASSWORD") in run.stderr, run.stderr
        assert "AuthenticationError" in run.stderr and "rolled back" in run.stderr
        assert wrong not in run.stdout + run.stderr
        assert host.snapshot()["container"] is None  # a first deploy that failed leaves no container
    finally:
        host.remove_container()


@pytest.fixture(scope="module")
def claude_code_binary():
    """The real Claude Code CLI, from locks/claude-code.json (npm's tarballs, sha512 checked)."""
    return claude_code.install(LAB_STATE / "claude-code")


def test_the_real_claude_code_cli_works_with_what_endpoints_prints_and_by_family(gateways, tmp_path,
                                                                                claude_code_binary):
    """Claude Code 2.1 in a network namespace that reaches only its loopback and a relay to the
    gateway: the default model, --model opus and --model haiku with the variables ops.endpoints
    prints; and with none of them, --model opus asks for claude-opus-5-5, which the gateway maps
    to its opus by family."""
    host = gateways[0]
    printed = exports(host.run("ops.endpoints", "--host", host.name, "--client", "claude-code", "--show-key").stdout)
    key = {"ANTHROPIC_AUTH_TOKEN": printed.pop("ANTHROPIC_AUTH_TOKEN")}
    assert printed.pop("ANTHROPIC_BASE_URL") == f"http://127.0.0.1:{host.port}"
    assert (printed["ANTHROPIC_DEFAULT_OPUS_MODEL"], printed["ANTHROPIC_DEFAULT_HAIKU_MODEL"]) == \
        ("claude-opus-4-5", "claude-haiku-4-5")
    for model, settings in ((None, printed), ("opus", printed), ("haiku", printed), ("opus", {})):
        done = claude_code.run_in_netns(claude_code_binary, "127.0.0.1", host.port, key, "Reply with one word.",
                                        model, tmp_path, timeout=120, extra_env=settings)
        assert done.returncode == 0 and "lab mock: hello from LiteLLM" in done.stdout, \
            (model, settings, done.stdout, done.stderr)


def test_audit_prints_the_hosts_log(gateways):
    host = gateways[0]
    run = host.run("ops.audit", "--host", host.name, "--last", "5")
    assert run.returncode == 0
    records = [json.loads(line.split(" ", 1)[1]) for line in run.stdout.splitlines()]
    assert records and records[-1]["action"] == "deploy" and records[-1]["host"] == host.name


def test_exec_runs_in_the_container_and_masks_secrets(gateways):
    host = gateways[0]
    run = host.run("ops.exec", "--host", host.name, "--command", "printenv LITELLM_MASTER_KEY REDIS_PASSWORD")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["********", "********"]
    failed = host.run("ops.exec", "--host", host.name, "--command", "python3 -c 'raise SystemExit(3)'")
    assert failed.returncode == 3 and "python3 exited with 3" in failed.stderr, "the command's own exit code"


def test_a_lock_taken_by_hand_holds_deploys_off_until_released(gateways):
    host = gateways[1]
    taken = host.run("lock.acquire", "--host", host.name, "--message", "database maintenance")
    assert taken.returncode == 0, taken.stderr
    try:
        assert "database maintenance" in host.run("lock.status", "--host", host.name).stdout
        blocked = host.run("deploy", "--host", host.name, "--lock-timeout", "1")
        assert blocked.returncode == 1 and "'database maintenance'" in blocked.stderr
        # Its SSH connection is long gone, yet it is no stale deploy's lock: --break-lock leaves it.
        broken = host.run("deploy", "--host", host.name, "--break-lock")
        assert broken.returncode == 1 and "locked the host by hand" in broken.stderr, broken.stderr
        assert "database maintenance" in host.run("lock.status", "--host", host.name).stdout
        again = host.run("lock.acquire", "--host", host.name)
        assert again.returncode == 1 and "already locked" in again.stderr
    finally:
        released = host.run("lock.release", "--host", host.name)
    assert released.returncode == 0 and "released the lock" in released.stdout
    assert host.run("lock.status", "--host", host.name).stdout.strip().endswith("not locked")
    assert host.run("deploy", "--host", host.name).returncode == 0


def test_a_draining_gateway_is_named_and_a_deploy_replaces_it(gateways):
    """LiteLLM's /health/drain (what a preStop hook calls; the gateways enable it) starts its
    graceful shutdown: it answers 503 shutting_down and takes no new work. ops.status says so; a
    deploy with nothing to change restarts it instead of waiting for it to answer. (Last: it
    restarts a gateway the tests above share.)"""
    host = gateways[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{host.port}/health/drain", timeout=30) as reply:
        assert json.load(reply)["status"] == "drained"
    status = host.run("ops.status", "--host", host.name)
    assert status.returncode == 1 and ", draining, " in status.stdout, status.stdout
    assert "503 shutting_down: this instance is draining" in status.stderr
    started = host.inspect()["State"]["StartedAt"]
    run = host.run("deploy", "--host", host.name)
    assert run.returncode == 0, run.stderr
    assert "the gateway is draining (503 shutting_down); restarting it" in run.stderr
    assert host.inspect()["State"]["StartedAt"] != started
    with urllib.request.urlopen(f"http://127.0.0.1:{host.port}/health/liveliness", timeout=10) as reply:
        assert reply.status == 200
