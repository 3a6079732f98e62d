"""The facts script run for real with sh on this machine's files, and the compose command lines it
leads to (v2, v1, the running project)."""

import base64
import json
import subprocess

import pytest

from litedeploy import runtimes
from litedeploy.commands.compose import compose_commands
from litedeploy.commands.facts import parse_facts
from litedeploy.errors import RemoteError
from litedeploy.facts import HostFacts
from litedeploy.frontdoor import topology
from litedeploy.inventory import load_inventory
from litedeploy.session import facts_script


@pytest.fixture
def lab(repo):
    return load_inventory(repo / "hosts.yaml").host("lab")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_facts_output_parses_into_files_hash_flavour_and_container():
    inspect = {"state": {"Status": "running", "Running": True, "StartedAt": "2026-01-01T00:00:00Z",
                         "ExitCode": 0, "Health": {"Status": "healthy"}},
               "restart_count": 2, "labels": {"com.docker.compose.project": "etc"},
               "image": "img", "image_id": "sha256:1"}
    compose, config = b64("services: {}\n"), b64("a: ü\n")
    facts = parse_facts(f"service_file {compose}\nconfig_file {config}\n"
                        f"env_file {b64('K=v')}\nlock acquired\nflavour v1\ncontainer {b64(json.dumps(inspect))}\n")
    assert facts.files.service_text == "services: {}\n" and facts.files.config_text == "a: ü\n"
    assert facts.files.env_text == "K=v" and facts.docker.compose_flavour == "v1" and facts.lock.acquired
    assert (facts.gateway.state.running, facts.gateway.state.restart_count, facts.gateway.state.health,
            facts.gateway.state.compose_project) == (True, 2, "healthy", "etc")


def test_the_engine_and_the_wanted_image_report_their_architectures():
    digests = b64(json.dumps(["x@sha256:1"]))
    facts = parse_facts(f"engine 28.2.2 amd64\nwanted_arch arm64\nwanted_image {digests}\n")
    docker = facts.docker
    assert (docker.engine_version, docker.engine_arch, docker.wanted_arch) == ("28.2.2", "amd64", "arm64")
    assert facts.docker.wanted_digests == ("x@sha256:1",)


def test_facts_of_a_bare_host_are_all_absent():
    assert parse_facts("") == HostFacts()


def test_a_held_lock_reports_its_holder():
    facts = parse_facts(f"lock held {b64(json.dumps({'user': 'ana', 'since': 't'}))}\n")
    assert not facts.lock.acquired and facts.lock.holder == {"user": "ana", "since": "t"}


def script_of(host):
    """The facts script a task runs on HOST, and the managed files by fact."""
    return facts_script(host, runtimes.of(host), topology(host))


def test_facts_script_runs_in_plain_sh_on_a_host_without_our_files(lab, tmp_path):
    # Run the real script locally with the paths pointed into an empty folder.
    host = lab.with_settings(compose_file=str(tmp_path / "none.yml"), config_dir=str(tmp_path / "gw"),
                   container_name="no-such-container-litedeploy")
    (tmp_path / "none.yml").write_text("services:\n  web: {}\n")
    output = subprocess.run(["sh", "-c", script_of(host)[0]], capture_output=True, text=True, check=True).stdout
    facts = parse_facts(output)
    assert facts.files.service_text == "services:\n  web: {}\n"
    assert facts.files.config_text is None and facts.files.env_text is None and facts.gateway.state is None


def test_compose_v2_and_v1_command_lines(lab):
    v2 = compose_commands(lab, HostFacts.of(compose_flavour="v2"))
    v1 = compose_commands(lab, HostFacts.of(compose_flavour="v1"))
    assert v2.up() == ["docker", "compose", "-f", "/srv/litellm-lab/compose.yml", "up", "-d", "--no-deps", "litellm"]
    assert v1.restart() == ["docker-compose", "-f", "/srv/litellm-lab/compose.yml", "restart", "litellm"]


def test_the_running_containers_project_is_kept(repo):
    from litedeploy.facts import GatewayState
    fox = load_inventory(repo / "hosts.yaml").host("fox")
    state = GatewayState("running", True, "", 0, 0, None, "", "", "etc")
    assert compose_commands(fox, HostFacts.of(compose_flavour="v2", state=state)).up()[4:6] == ["-p", "etc"]


def test_a_host_without_compose_is_a_clear_error(lab):
    with pytest.raises(RemoteError, match="lab: neither 'docker compose' nor 'docker-compose' is installed"):
        compose_commands(lab, HostFacts())


def test_facts_name_symlinks_directories_and_bytes_that_are_not_text(lab, tmp_path):
    """The real script on this machine's files: a symlinked compose file, a directory where the
    config should be, an env file that is not UTF-8."""
    (tmp_path / "real dir").mkdir()
    (tmp_path / "real dir/compose.yml").write_text("services: {}\n")
    (tmp_path / "compose.yml").symlink_to(tmp_path / "real dir/compose.yml")
    (tmp_path / "gw/config.yaml").mkdir(parents=True)
    (tmp_path / "gw/litellm.env").write_bytes(b"K=caf\xe9\n")
    host = lab.with_settings(compose_file=str(tmp_path / "compose.yml"), config_dir=str(tmp_path / "gw"),
                   container_name="no-such-container-litedeploy")
    command, managed = script_of(host)
    output = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    facts = parse_facts(output, managed)
    assert facts.files.service_text == "services: {}\n"
    assert facts.files.real_paths == {host.docker.compose_file: str(tmp_path / "real dir/compose.yml")}
    assert facts.files.not_files == (host.config_path,)
    assert facts.files.not_text == (host.env_path,) and facts.files.env_text is None


def test_facts_are_the_same_when_no_temporary_folder_can_be_made(lab, tmp_path):
    """The Docker questions run side by side through a temporary folder, or one after another when
    /tmp is full or read-only: the answers are the same."""
    import os
    (tmp_path / "compose.yml").write_text("services:\n  web: {}\n")
    host = lab.with_settings(compose_file=str(tmp_path / "compose.yml"), config_dir=str(tmp_path / "gw"),
                   container_name="no-such-container-litedeploy")
    command, managed = script_of(host)
    side_by_side = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    in_turn = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True,
                             env={**os.environ, "TMPDIR": str(tmp_path / "no such folder")})
    assert parse_facts(in_turn.stdout, managed) == parse_facts(side_by_side.stdout, managed)
    assert parse_facts(in_turn.stdout, managed).files.service_text == "services:\n  web: {}\n"
