"""Operations against the real container in the lab, healthy and broken: stopped, crash-looping,
wrong master key, a model missing from /v1/models."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import pytest
import yaml
from conftest import encrypt_for_lab, lab_secrets

pytestmark = pytest.mark.lab


def master_key() -> str:
    return lab_secrets()["LITELLM_MASTER_KEY"]


def request_logging(host, secret: str, tag: str) -> None:
    """A request whose path carries a secret puts it into uvicorn's access log. (LiteLLM masks
    paths that look like sk- keys itself, so the salt key is used.)"""
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{host.port}/{tag}/{secret}", timeout=10)
    except urllib.error.HTTPError:
        pass


def last_error(run) -> str:
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    return run.stderr.strip().splitlines()[-1]


def test_status_of_a_healthy_gateway(host):
    run = host.run("ops.status", "--host", host.name)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{host.name}: running" in run.stdout and "answering" in run.stdout
    assert "no drift" in run.stdout and f"host network, 127.0.0.1:{host.port}" in run.stdout
    report = json.loads(host.run("ops.status", "--host", host.name, "--json").stdout)
    assert (report["state"], report["answering"], report["drift"], report["restarts"]) == ("running", True, [], 0)
    assert report["config_on_host"] == report["config_in_repo"]
    # The release hosts.yaml names, pinned to the digest the host pulled.
    assert report["image"].startswith(host.entry["image"] + "@sha256:") and report["image_id"].startswith("sha256:")
    assert report["image"].partition("@")[2] in report["digests"][0]


def test_status_shows_a_hand_edit_as_drift_and_a_pending_restart(host):
    config = host.root / "litellm/config.yaml"
    original = config.read_text()
    config.write_text(original + "# edited by hand\n")
    try:
        run = host.run("ops.status", "--host", host.name)
        assert "drift in config.yaml: run deploy" in run.stdout
        assert "a restart may be pending" in run.stdout
        assert last_error(run) == f"error: {host.name}: the host differs from the repo"
        diff = host.run("config.diff", "--host", host.name)
        assert "-# edited by hand" in diff.stdout
    finally:
        config.write_text(original)


def test_config_show_prints_the_hosts_config_without_secrets(host):
    run = host.run("config.show", "--host", host.name)
    assert run.returncode == 0
    assert "master_key: os.environ/LITELLM_MASTER_KEY" in run.stdout
    assert master_key() not in run.stdout


def test_logs_tail_grep_and_mask_a_secret_that_reached_the_log(host):
    salt = lab_secrets()["LITELLM_SALT_KEY"]
    request_logging(host, salt, "probe")
    run = host.run("ops.logs", "--host", host.name, "--tail", "200", "--grep", "404")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines and all("404" in line for line in lines)
    assert any('"GET /probe/******** HTTP/1.1" 404' in line for line in lines)
    assert salt not in run.stdout


def test_logs_follow_streams_new_lines_masked(host):
    line = host.followed_line("follow-me", lambda: request_logging(host, lab_secrets()["LITELLM_SALT_KEY"],
                                                                    "follow-me"))
    assert "GET /follow-me/******** HTTP/1.1" in line


def test_env_shows_each_variable_set_and_matching_without_values(host):
    run = host.run("ops.env", "--host", host.name)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION_NAME",
                                                  "LITELLM_MASTER_KEY", "LITELLM_SALT_KEY"]
    assert all("matches the repo" in line for line in lines)
    for value in lab_secrets().values():
        assert value not in run.stdout


def test_env_and_smoke_catch_a_master_key_the_container_does_not_have(host, tmp_path):
    other = encrypt_for_lab(lab_secrets(LITELLM_MASTER_KEY="sk-lab-not-the-deployed-one-42"), tmp_path / "o.enc.yaml")
    host.write_inventory({"secrets_file": str(other)})
    env = host.run("ops.env", "--host", host.name)
    assert "LITELLM_MASTER_KEY       set sha256:" in env.stdout and "DIFFERS from the repo" in env.stdout
    assert last_error(env) == f"error: {host.name}: LITELLM_MASTER_KEY not as the repo has them: deploy to fix"
    smoke = host.run("ops.smoke", "--host", host.name)
    assert "FAIL  models" in smoke.stdout and "FAIL  chat claude-3-7-sonnet" in smoke.stdout
    assert "ok    auth enforced" in smoke.stdout
    assert last_error(smoke) == f"error: {host.name}: smoke failed: models, chat claude-3-7-sonnet, " \
                                "messages claude-3-7-sonnet"
    assert "sk-lab-not-the-deployed-one-42" not in smoke.stdout + smoke.stderr


def test_smoke_all_models_as_json_and_direct(host):
    run = host.run("ops.smoke", "--host", host.name, "--all-models", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] and [c["name"] for c in report["checks"] if c["name"].startswith("chat")] == [
        "chat claude-3-7-sonnet", "chat claude-sonnet-4", "chat claude-opus-4"]
    direct = host.run("ops.smoke", "--host", host.name, "--direct", f"http://127.0.0.1:{host.port}")
    assert direct.returncode == 0, direct.stdout + direct.stderr


def test_smoke_fails_when_a_configured_model_is_not_listed(host):
    models = yaml.safe_load(host.inventory.read_text())["defaults"]["vars"]["models"]
    host.write_inventory(models=models + [{"name": "claude-ghost", "model": "bedrock/us.anthropic.ghost-v1:0"}])
    run = host.run("ops.smoke", "--host", host.name, "--model", "claude-3-7-sonnet")
    assert "/v1/models does not list claude-ghost" in run.stdout
    assert last_error(run) == f"error: {host.name}: smoke failed: models"


def test_endpoints_show_the_key_only_when_asked(host):
    hidden = host.run("ops.endpoints", "--host", host.name)
    assert f"base URL  http://127.0.0.1:{host.port}" in hidden.stdout
    assert "model IDs claude-3-7-sonnet, claude-sonnet-4, claude-opus-4" in hidden.stdout
    assert master_key() not in hidden.stdout
    shown = host.run("ops.endpoints", "--host", host.name, "--show-key")
    assert f"API key   {master_key()}" in shown.stdout


def test_a_stopped_container_fails_status_and_smoke_until_started(host):
    stopped = host.run("compose.stop", "--host", host.name)
    assert stopped.returncode == 0, stopped.stderr
    try:
        assert last_error(host.run("ops.status", "--host", host.name)) == f"error: {host.name}: litellm is exited"
        smoke = host.run("ops.smoke", "--host", host.name)
        assert "FAIL  liveliness" in smoke.stdout and smoke.returncode == 1
        ps = host.run("compose.ps", "--host", host.name)
        assert host.container in ps.stdout and "Exit" in ps.stdout
    finally:
        started = host.run("compose.start", "--host", host.name)
    assert started.returncode == 0, started.stderr
    assert "started litellm; answering after" in started.stdout


@pytest.mark.compose_flavours("v2")  # our wait ends it; v1's restart is the same verb
def test_a_crash_loop_ends_compose_restart_early_and_a_deploy_repairs_it(host):
    (host.root / "litellm/config.yaml").write_text("model_list: [\n")  # broken by hand: LiteLLM exits at start
    started = time.monotonic()
    restart = host.run("compose.restart", "--host", host.name)
    assert "crash-looping" in last_error(restart)
    assert time.monotonic() - started < host.entry["health_timeout"]
    report = json.loads(host.run("ops.status", "--host", host.name, "--json").stdout)
    assert report["restarts"] >= 1 and not report["answering"] and report["drift"] == ["config.yaml"]
    fixed = host.run("deploy", "--host", host.name)
    assert fixed.returncode == 0, fixed.stderr
    assert host.run("ops.status", "--host", host.name).returncode == 0


def test_pull_fetches_the_pinned_release_and_an_unreachable_registry_is_one_clear_error(host, compose_flavour):
    pulled = host.run("compose.pull", "--host", host.name)
    assert pulled.returncode == 0 and f"{host.name}: pulled the litellm image" in pulled.stdout, pulled.stderr
    # A compose file naming a registry on a closed loopback port: refused at once.
    compose = host.root / "compose.yml"
    original = compose.read_text()
    compose.write_text(re.sub(r'image: ".*"', 'image: "127.0.0.1:1/litedeploy-missing:0"', original, count=1))
    try:
        program = {"v2": "docker compose", "v1": "docker-compose"}[compose_flavour]
        assert f"error: {host.name}: {program} failed" in last_error(host.run("compose.pull", "--host", host.name))
    finally:
        compose.write_text(original)


def test_several_hosts_report_each_and_fail_naming_the_broken_one(host):
    data = yaml.safe_load(host.inventory.read_text())
    ghost = {**data["hosts"][host.name], "container_name": "litedeploy-test-no-such-container"}
    data["hosts"]["ghost"] = ghost
    host.inventory.write_text(yaml.safe_dump(data))
    run = host.run("ops.status", "--host", f"{host.name},ghost")
    assert f"{host.name}: running" in run.stdout
    assert "error: ghost: litellm is absent" in run.stderr
    assert last_error(run) == "error: failed on 1 of 2 hosts: ghost"


def test_fab_runs_the_same_ops_tasks(host):
    run = host.run("-H", host.name, "ops.status", program="fabric")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{host.name}: running" in run.stdout


@pytest.mark.compose_flavours("v2")  # the smoke's fallback check; compose only restarts the gateway
def test_smoke_proves_the_fallback_path_only_where_the_host_allows_it(host):
    fallbacks = {"claude-3-7-sonnet": ["claude-sonnet-4"]}
    host.write_inventory(fallbacks=fallbacks)
    assert host.run("deploy", "--host", host.name).returncode == 0
    skipped = host.run("ops.smoke", "--host", host.name)
    assert skipped.returncode == 0
    assert "skip  fallback from claude-3-7-sonnet" in skipped.stdout and "does not allow" in skipped.stdout
    host.write_inventory(fallbacks=fallbacks, allow_mock_testing=True)
    deployed = host.run("deploy", "--host", host.name)
    assert deployed.returncode == 0, deployed.stderr
    tested = host.run("ops.smoke", "--host", host.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "ok    fallback from claude-3-7-sonnet" in tested.stdout
    assert "answered by us.anthropic.claude-sonnet-4-20250514-v1:0 after 1 fallback(s)" in tested.stdout
    host.write_inventory()
    assert host.run("deploy", "--host", host.name).returncode == 0
