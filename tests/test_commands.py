"""The host commands, run for real with sh on this machine's files (as root, like on a host), and the
shell framing that carries them."""

import http.server
import json
import os
import socket
import stat
import subprocess
import threading

import pytest

from litedeploy.commands import argv
from litedeploy.commands.compose import ComposeCommands
from litedeploy.commands.files import BACKUPS_KEPT, REJECTED
from litedeploy.commands.files import install as install_script
from litedeploy.commands.files import restore as restore_script
from litedeploy.commands.transfer import INPUT_READY, receive, relay
from litedeploy.frontdoor import topology
from litedeploy.inventory import load_inventory
from litedeploy.plan import FileChange
from litedeploy.releases import release_names
from litedeploy.remote import Marked

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installs root-owned files, as on a host")


class AcceptsComposeWithServices(ComposeCommands):
    """Stands in for `docker compose config -q`: accepts a file with a services: line."""

    def validate(self, file):
        return ["grep", "-q", "^services:", file]


@pytest.fixture
def host(repo, tmp_path):
    lab = load_inventory(repo / "hosts.yaml").host("lab")
    return lab.with_settings(compose_file=str(tmp_path / "compose.yml"), config_dir=str(tmp_path / "gw"))


def install(host, tmp_path, changes, deploy_id):
    stage = tmp_path / f"stage-{deploy_id}"
    stage.mkdir(mode=0o700)
    for index, change in enumerate(changes):
        (stage / str(index)).write_text(change.new)
    script = install_script(host, changes, str(stage), deploy_id, AcceptsComposeWithServices("v2", host.docker.compose_file, None, host.service_name, host.docker.container_name))
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True)


def test_each_install_keeps_the_previous_version_and_at_most_five(host, tmp_path):
    for n in range(BACKUPS_KEPT + 2):
        change = FileChange(host.config_path, None, f"version: {n}\n", "0644")
        assert install(host, tmp_path, [change], f"2026010{n}").returncode == 0
    backups = sorted(os.listdir(host.backup_dir))
    assert len(backups) == BACKUPS_KEPT
    assert open(f"{host.backup_dir}/{backups[-1]}").read() == f"version: {BACKUPS_KEPT}\n"
    assert open(host.config_path).read() == f"version: {BACKUPS_KEPT + 1}\n"
    assert not [name for name in os.listdir(tmp_path) if name.startswith("stage")], "stages are removed"


def test_env_file_is_root_owned_0600_and_the_backup_dir_private(host, tmp_path):
    assert install(host, tmp_path, [FileChange(host.env_path, None, "K=v\n", "0600", secret=True)], "1").returncode == 0
    env = os.stat(host.env_path)
    assert (env.st_uid, stat.S_IMODE(env.st_mode)) == (0, 0o600)
    assert stat.S_IMODE(os.stat(host.backup_dir).st_mode) == 0o700


def test_a_rejected_compose_file_puts_our_files_back(host, tmp_path):
    (tmp_path / "compose.yml").write_text("services:\n  web: {}\n")
    os.chmod(tmp_path / "compose.yml", 0o640)
    first = [FileChange(host.config_path, None, "old\n", "0644")]
    assert install(host, tmp_path, first, "1").returncode == 0
    changes = [FileChange(host.docker.compose_file, "", "no services here\n", "0644", keep_owner=True, validated=True),
               FileChange(host.config_path, "old\n", "new\n", "0644"),
               FileChange(host.env_path, None, "K=v\n", "0600", secret=True)]
    result = install(host, tmp_path, changes, "2")
    assert result.returncode == REJECTED
    assert "the new compose file was rejected" in result.stderr
    assert (tmp_path / "compose.yml").read_text() == "services:\n  web: {}\n"
    assert open(host.config_path).read() == "old\n"
    assert not os.path.exists(host.env_path), "a file that did not exist before is gone again"


def test_the_compose_file_keeps_its_mode_and_restore_brings_back_the_old_one(host, tmp_path):
    (tmp_path / "compose.yml").write_text("services: {}\n")
    os.chmod(tmp_path / "compose.yml", 0o640)
    change = FileChange(host.docker.compose_file, "services: {}\n", "services:\n  litellm: {}\n", "0644", keep_owner=True, validated=True)
    assert install(host, tmp_path, [change], "3").returncode == 0
    assert stat.S_IMODE(os.stat(tmp_path / "compose.yml").st_mode) == 0o640
    subprocess.run(["sh", "-c", restore_script(host, [change], "3")], check=True)
    assert (tmp_path / "compose.yml").read_text() == "services: {}\n"


def test_the_mark_ends_a_commands_output_and_brings_its_exit_code_across_chunks():
    out = Marked(b"litedeploy-end-1234", coded=True)
    for chunk in (b"first line\nsecond", b" line\nlitedeploy-en", b"d-1234 ", b"3\n"):
        assert not out.done
        out.feed(chunk)
    assert out.done and out.code == 3
    assert bytes(out.kept) == b"first line\nsecond line\n"


def test_only_bytes_that_may_begin_the_mark_wait_for_the_next_chunk():
    seen = []
    out = Marked(b"litedeploy-end-1234", sink=seen.append)
    out.feed(b"a log line\nlite")
    assert b"".join(seen) == b"a log line\n", "a whole line reaches the sink at once"
    out.feed(b"rally not the mark\n")
    out.feed(b"litedeploy-end-1234\n")
    assert b"".join(seen) == b"a log line\nliterally not the mark\n" and out.done


def test_relay_joins_exactly_the_request_to_a_tcp_port_with_bash_alone():
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"you asked for {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.handle_request, daemon=True).start()
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    # What follows the request on stdin is the shell's next command, not the relay's to read.
    shell = subprocess.run(["sh", "-c", f"{argv(relay('127.0.0.1', server.server_port, len(request)))}; cat"],
                           input=request + b"the next command\n", capture_output=True, timeout=10)
    server.server_close()
    ready, _, answer = shell.stdout.partition(b"\n")
    assert ready == INPUT_READY.encode()
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"you asked for /healththe next command\n")


def test_received_files_take_exactly_their_bytes_from_stdin_into_a_private_folder(tmp_path):
    stage = tmp_path / "stage"
    files = [b"KEY='it''s'\n", b"", "caf\u00e9\n".encode()]
    shell = subprocess.run(["sh", "-c", f"{argv(receive(str(stage), [len(data) for data in files]))}; cat"],
                           input=b"".join(files) + b"the next command\n", capture_output=True, timeout=10)
    assert shell.stdout == f"{INPUT_READY}\n".encode() + b"the next command\n"
    assert [(stage / str(index)).read_bytes() for index in range(3)] == files
    assert stat.S_IMODE(stage.stat().st_mode) == 0o700 and stat.S_IMODE((stage / "0").stat().st_mode) == 0o600


def test_relay_to_a_closed_port_fails_before_saying_ready():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    relay_run = subprocess.run(argv(relay("127.0.0.1", port, 10)), shell=True, capture_output=True, timeout=10)
    assert relay_run.returncode == 1
    assert INPUT_READY.encode() not in relay_run.stdout
    assert b"Connection refused" in relay_run.stderr


def test_a_symlinked_compose_file_is_rewritten_at_its_target_keeping_link_owner_and_mode(host, tmp_path):
    real = tmp_path / "admin's files/compose.yml"
    real.parent.mkdir()
    real.write_text("services: {}\n")
    os.chmod(real, 0o640)
    os.chown(real, 1234, 1234)
    link = tmp_path / "compose.yml"
    link.symlink_to(real)
    change = FileChange(str(link), "services: {}\n", "services:\n  litellm: {}\n", "0644", keep_owner=True,
                        resolved=str(real))
    assert install(host, tmp_path, [change], "4").returncode == 0
    assert link.is_symlink() and real.read_text() == "services:\n  litellm: {}\n"
    assert (stat.S_IMODE(real.stat().st_mode), real.stat().st_uid) == (0o640, 1234)
    subprocess.run(["sh", "-c", restore_script(host, [change], "4")], check=True)
    assert link.is_symlink() and real.read_text() == "services: {}\n"


def test_files_with_one_name_in_two_folders_keep_backups_of_their_own(host, tmp_path):
    other = tmp_path / "elsewhere/config.yaml"
    other.parent.mkdir()
    for n in range(2):
        changes = [FileChange(host.config_path, None, f"ours {n}\n", "0644"),
                   FileChange(str(other), None, f"theirs {n}\n", "0644")]
        assert install(host, tmp_path, changes, f"20260{n}").returncode == 0
    contents = sorted(open(f"{host.backup_dir}/{name}").read() for name in os.listdir(host.backup_dir))
    assert contents == ["ours 0\n", "theirs 0\n"]


def test_pruning_survives_spaces_and_quotes_in_the_config_folder(repo, tmp_path):
    lab = load_inventory(repo / "hosts.yaml").host("lab")
    odd = lab.with_settings(compose_file=str(tmp_path / "compose.yml"), config_dir=str(tmp_path / "it's a dir"))
    for n in range(BACKUPS_KEPT + 3):
        assert install(odd, tmp_path, [FileChange(odd.config_path, None, f"v{n}\n", "0644")], f"3{n:02}").returncode == 0
    assert len(os.listdir(odd.backup_dir)) == BACKUPS_KEPT


def test_backups_are_0600_whatever_the_original_and_restore_keeps_the_targets_mode(host, tmp_path):
    (tmp_path / "compose.yml").write_text("services: {}\n# KEY=plain\n")
    os.chmod(tmp_path / "compose.yml", 0o644)
    change = FileChange(host.docker.compose_file, "x", "services:\n  litellm: {}\n", "0644", keep_owner=True, validated=True)
    assert install(host, tmp_path, [change], "5").returncode == 0
    (backup,) = os.listdir(host.backup_dir)
    assert stat.S_IMODE(os.stat(f"{host.backup_dir}/{backup}").st_mode) == 0o600
    subprocess.run(["sh", "-c", restore_script(host, [change], "5")], check=True)
    assert stat.S_IMODE(os.stat(tmp_path / "compose.yml").st_mode) == 0o644
    assert (tmp_path / "compose.yml").read_text() == "services: {}\n# KEY=plain\n"


def test_every_builder_quotes_paths_that_hold_shell_syntax(repo, tmp_path):
    """A config folder whose name is shell code: lock, audit, file facts and releases work on it and
    the code never runs."""
    from litedeploy import runtimes
    from litedeploy.commands import audit, files, lock
    from litedeploy.commands.facts import parse_facts
    lab = load_inventory(repo / "hosts.yaml").host("lab")
    folder = tmp_path / "it's $(touch pwned); `touch pwned` gw"
    folder.mkdir()
    odd = lab.with_settings(compose_file=str(folder / "compose.yml"), config_dir=str(folder / "x"))
    (folder / "x").mkdir()
    (folder / "compose.yml").write_text("services: {}\n")
    sh = lambda command: subprocess.run(["sh", "-c", command], capture_output=True, text=True, cwd=tmp_path)  # noqa: E731
    try:
        assert "lock acquired" in sh(lock.take(odd, {"user": "ann's"})).stdout
        assert parse_facts(sh(lock.holder(odd)).stdout).lock.holder == {"user": "ann's"}
        sh(audit.append(odd, {"id": "1", "note": "it's $(x)"}))
        assert json.loads(sh(audit.last(odd, 5)).stdout) == {"id": "1", "note": "it's $(x)"}
        docker, layout = runtimes.of(odd), topology(odd)
        managed = layout.managed_files(docker, odd)
        assert parse_facts(sh(files.contents(odd, managed)).stdout, managed).files.service_text == "services: {}\n"
        sh(files.keep_release(odd, "20261123T000000Z-abcdef", None, release_names(docker, layout.written(docker, odd))))
        assert "release 20261123T000000Z-abcdef compose.yml" in sh(files.releases(odd)).stdout
    finally:
        sh(argv(lock.release(odd)))
    assert not (tmp_path / "pwned").exists() and not list(tmp_path.rglob("pwned"))


@pytest.mark.parametrize("engine, facts", [
    ("exit 1", "docker_unreachable yes\n"),  # stopped, or its socket denied: every docker command fails
    ('[ "$1" = version ] && exit 0; exit 1', ""),  # the engine answers; there is just no such container
])
def test_no_container_because_the_engine_does_not_answer_is_a_fact_of_its_own(host, tmp_path, engine, facts):
    from litedeploy.commands.container import state
    from litedeploy.commands.facts import parse_facts
    (tmp_path / "docker").write_text(f"#!/bin/sh\n{engine}\n")
    (tmp_path / "docker").chmod(0o755)
    found = subprocess.run(["sh", "-c", state(host)], capture_output=True, text=True,
                           env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}).stdout
    assert found == facts
    assert parse_facts(found).docker.unreachable is bool(facts) and parse_facts(found).gateway.state is None
