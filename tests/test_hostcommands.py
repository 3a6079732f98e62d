"""The host scripts, run for real with sh on this machine's files (as root, like on a host)."""

import os
import stat
import subprocess
from dataclasses import replace

import pytest

from litedeploy.hostcommands import BACKUPS_KEPT, COMPOSE_REJECTED, install_script, restore_script
from litedeploy.inventory import load_inventory
from litedeploy.plan import FileChange

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installs root-owned files, as on a host")


class AcceptsComposeWithServices:
    """Stands in for `docker compose config -q`: accepts a file with a services: line."""

    def validate(self, file):
        return ["grep", "-q", "^services:", file]


@pytest.fixture
def host(repo, tmp_path):
    lab = load_inventory(repo / "hosts.yaml").host("lab")
    return replace(lab, compose_file=str(tmp_path / "compose.yml"), config_dir=str(tmp_path / "gw"))


def install(host, tmp_path, changes, deploy_id):
    stage = tmp_path / f"stage-{deploy_id}"
    stage.mkdir(mode=0o700)
    for index, change in enumerate(changes):
        (stage / str(index)).write_text(change.new)
    script = install_script(host, changes, str(stage), deploy_id, AcceptsComposeWithServices())
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
    changes = [FileChange(host.compose_file, "", "no services here\n", "0644", keep_owner=True),
               FileChange(host.config_path, "old\n", "new\n", "0644"),
               FileChange(host.env_path, None, "K=v\n", "0600", secret=True)]
    result = install(host, tmp_path, changes, "2")
    assert result.returncode == COMPOSE_REJECTED
    assert "the new compose file was rejected" in result.stderr
    assert (tmp_path / "compose.yml").read_text() == "services:\n  web: {}\n"
    assert open(host.config_path).read() == "old\n"
    assert not os.path.exists(host.env_path), "a file that did not exist before is gone again"


def test_the_compose_file_keeps_its_mode_and_restore_brings_back_the_old_one(host, tmp_path):
    (tmp_path / "compose.yml").write_text("services: {}\n")
    os.chmod(tmp_path / "compose.yml", 0o640)
    change = FileChange(host.compose_file, "services: {}\n", "services:\n  litellm: {}\n", "0644", keep_owner=True)
    assert install(host, tmp_path, [change], "3").returncode == 0
    assert stat.S_IMODE(os.stat(tmp_path / "compose.yml").st_mode) == 0o640
    subprocess.run(["sh", "-c", restore_script(host, [change], "3")], check=True)
    assert (tmp_path / "compose.yml").read_text() == "services: {}\n"
