"""The systemd runtime's pure parts: inventory settings, the rendered unit, the plan's verbs, the
commands it sends and the facts it reads back."""

import base64
import shlex
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import DEFAULT_IMAGE

from litedeploy import runtimes
from litedeploy.commands import unit
from litedeploy.commands.facts import parse_facts
from litedeploy.errors import DeployError, InventoryError, RenderError
from litedeploy.facts import HostFacts
from litedeploy.frontdoor import topology
from litedeploy.inventory import load_inventory, parse_inventory
from litedeploy.releases import Release
from litedeploy.render import load_templates, render_host
from litedeploy.secrets import SecretValues

SYSTEMD = runtimes.named("systemd")


def plan_of(host, desired, facts):
    """The plan a deploy makes: the host's topology over the runtime's files."""
    return topology(host).plan(SYSTEMD, host, desired, facts)
SECRETS = SecretValues({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE1", "AWS_SECRET_ACCESS_KEY": "secret/value+1",
                        "LITELLM_MASTER_KEY": "sk-master-123456", "LITELLM_SALT_KEY": "salt-123456"}, "s.enc.yaml")


@pytest.fixture
def labsd(repo):
    return load_inventory(repo / "hosts.yaml").host("labsd")


@pytest.fixture
def desired(repo, labsd):
    return render_host(load_templates(repo / "templates", repo / "models.yaml"), labsd, SECRETS, runtimes.of(labsd))


def running_unit(pid: int = 41, restarts: int = 0) -> str:
    show = (f"MainPID={pid}\nNRestarts={restarts}\nExecMainStartTimestamp=Tue 2026-11-24 02:20:54 UTC\n"
            "ExecMainStatus=0\nLoadState=loaded\nActiveState=active\nSubState=running")
    return "service " + base64.b64encode(show.encode()).decode()


def facts_of(host, desired, **changes) -> HostFacts:
    state = parse_facts(running_unit()).gateway.state
    return HostFacts.of(**{"service_text": desired.service, "config_text": desired.config, "env_text": desired.env,
                           "state": state, "venvs": (host.systemd.venv_dir,), "service_user_exists": True,
                           **changes})


@pytest.mark.parametrize("setting, message", [
    ("runtime: podman", "'runtime' must be one of docker, systemd"),
    ("packages: ['litellm[proxy]>=1.0']", "'packages' must be a list of pinned requirements"),
    ("packages: ['prisma==0.15.0']", "including litellm"),
    ("venv_root: 'relative/venvs'", "'venv_root' must be an absolute path"),
    ("service_user: 'Lite LLM'", "'service_user' must be a system user name"),
])
def test_bad_systemd_settings_are_named(setting, message):
    text = f"hosts:\n  one:\n    address: one.example\n    {setting}\n    vars: {{models: [{{name: a}}]}}\n"
    with pytest.raises(InventoryError, match=rf"/inv/hosts.yaml: host 'one': .*{message[:40].replace('[', '.')}"):
        parse_inventory(text, Path("/inv/hosts.yaml"), DEFAULT_IMAGE)


def test_the_venv_is_named_for_litellm_and_changes_with_any_package(labsd):
    assert labsd.systemd.litellm_version == "1.106.2"
    assert labsd.systemd.venv_dir.startswith("/opt/litellm/litellm-1.106.2-")
    other = labsd.with_settings(packages=(*labsd.systemd.packages, "PyYAML==6.0.3"))
    assert other.systemd.venv_dir != labsd.systemd.venv_dir and other.systemd.litellm_version == "1.106.2"


def test_the_unit_runs_the_venv_as_the_service_user_and_holds_no_secret(labsd, desired):
    lines = desired.service.splitlines()
    assert f"ExecStart={labsd.systemd.venv_dir}/bin/litellm --config /etc/litellm/config.yaml --host 0.0.0.0 --port 4000" \
        in lines
    assert "User=litellm" in lines and "EnvironmentFile=/etc/litellm/litellm.env" in lines
    assert "Restart=on-failure" in lines and "WantedBy=multi-user.target" in lines
    assert not any(value in desired.service for value in SECRETS.values())
    assert "root:litellm 0640" in desired.env.splitlines()[0]


def test_production_vars_reach_the_unit(repo, labsd):
    host = replace(labsd, vars={**labsd.vars, "workers": 4, "memory_limit": "4g", "stop_grace_period": "60s"})
    text = render_host(load_templates(repo / "templates", repo / "models.yaml"), host, SECRETS, runtimes.of(host)).service
    assert "--num_workers 4" in text and "MemoryMax=4G" in text.splitlines() and "TimeoutStopSec=60s" in text
    # Several workers get a Prometheus folder of their own, made and removed by systemd.
    assert {"RuntimeDirectory=litellm", "Environment=PROMETHEUS_MULTIPROC_DIR=/run/litellm"} <= set(text.splitlines())


def test_a_unit_template_that_loses_the_env_file_is_refused(repo, tmp_path, labsd):
    from conftest import copy_templates
    folder = copy_templates(tmp_path)
    unit_file = folder / "litellm.service.j2"
    unit_file.write_text(unit_file.read_text().replace("EnvironmentFile=", "#EnvironmentFile="))
    with pytest.raises(RenderError, match="litellm.service.j2 .host labsd.: must read its secrets from EnvironmentFile"):
        render_host(load_templates(folder, repo / "models.yaml"), labsd, SECRETS, runtimes.of(labsd))


def test_nothing_differs_so_nothing_happens(labsd, desired):
    plan = plan_of(labsd, desired, facts_of(labsd, desired))
    assert plan.changes == () and plan.restart is None and plan.preparation is None


def test_a_first_deploy_creates_the_user_installs_the_venv_and_brings_the_unit_up(labsd, desired):
    plan = plan_of(labsd, desired, HostFacts())
    assert [(c.path, c.mode, c.group) for c in plan.changes] == [
        ("/etc/systemd/system/litellm.service", "0644", "root"), ("/etc/litellm/litellm.env", "0640", "litellm"),
        ("/etc/litellm/config.yaml", "0640", "litellm")]
    assert plan.preparation.user == "litellm" and plan.preparation.venv == labsd.systemd.venv_dir and plan.restart == "up"


@pytest.mark.parametrize("changed, verb", [("config_text", "restart"), ("env_text", "restart"), ("service_text", "up")])
def test_config_or_env_restart_a_unit_change_reloads(labsd, desired, changed, verb):
    plan = plan_of(labsd, desired, facts_of(labsd, desired, **{changed: "old\n"}))
    assert len(plan.changes) == 1 and plan.restart == verb


def test_a_missing_venv_is_installed_and_restarts(labsd, desired):
    plan = plan_of(labsd, desired, facts_of(labsd, desired, venvs=()))
    assert plan.changes == () and plan.preparation.venv == labsd.systemd.venv_dir and plan.restart == "up"


def test_a_release_whose_venv_is_gone_is_refused(labsd, desired):
    older = desired.service.replace(labsd.systemd.venv_dir, "/opt/litellm/litellm-1.0.0-deadbeef")
    release = Release("20261124T000000Z-abcdef", {"litellm.service": older, "config.yaml": desired.config,
                                                  "litellm.env": desired.env})
    assert release.runs(labsd, SYSTEMD) == "/opt/litellm/litellm-1.0.0-deadbeef"
    with pytest.raises(DeployError, match="litellm-1.0.0-deadbeef: the venv this unit runs is gone"):
        plan_of(labsd, release.desired(labsd, frozenset(SECRETS), SYSTEMD), facts_of(labsd, desired))


def test_unit_state_is_read_like_a_containers(labsd):
    facts = parse_facts(running_unit(pid=7, restarts=2) + "\nvenvs /opt/litellm/a /opt/litellm/b\nservice_user 1\n")
    state = facts.gateway.state
    assert (state.status, state.running, state.restart_count, state.kind) == ("running", True, 2, "service")
    assert state.started_at == "2026-11-24T02:20:54+00:00"
    assert facts.systemd.venvs == ("/opt/litellm/a", "/opt/litellm/b") and facts.systemd.service_user_exists
    gone = "service " + base64.b64encode(b"LoadState=not-found\nActiveState=inactive").decode()
    assert parse_facts(gone).gateway.state is None
    assert SYSTEMD.service.served(labsd, f"ExecStart={labsd.systemd.venv_dir}/bin/litellm --port 4000\n") == labsd.systemd.venv_dir


@pytest.mark.parametrize("since, expected", [("10m", "-10m"), ("1h30m", "-1h30m"), ("1700000000", "@1700000000"),
                                             ("2026-11-22T10:00:00Z", "@1795341600")])
def test_docker_style_since_becomes_journalctl_time(since, expected):
    assert unit.journal_time(since) == expected


def test_the_venv_install_quotes_every_path_and_uses_only_the_staged_wheels(labsd, tmp_path):
    host = labsd.with_settings(venv_root=str(tmp_path / "venvs"), python="false")
    script = unit.install_venv(host, "/tmp/.litedeploy-0011")
    assert "--no-index --find-links /tmp/.litedeploy-0011 'litellm[proxy]==1.106.2' prisma==0.15.0" in script
    # A failed step removes the half-made venv: nothing incomplete is left behind.
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert done.returncode != 0 and list((tmp_path / "venvs").iterdir()) == []
    assert shlex.quote(host.systemd.venv_dir) in script
