"""The README's main command, run as a new user would run it, against the real lab."""

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

MAIN_JOB = "inv lab.up deploy --host lab ops.smoke --host lab"
TEST_JOB = "pip install --require-hashes -r locks/test.txt && python -m pytest"


def test_readme_and_ci_give_the_commands_tested_here(repo):
    readme = (repo / "README.md").read_text()
    assert f"    pip install -e . && {MAIN_JOB}\n" in readme
    assert f"    {TEST_JOB}\n" in readme
    assert TEST_JOB in (repo / ".ci/run").read_text()


def test_readme_main_job_deploys_to_the_lab_and_smoke_passes(lab, repo, tmp_path):
    """As on a fresh machine: without a running lab deployment, what an earlier run left in the lab
    host's folder (a digest pinned from another build's registry) is set aside and put back after."""
    existed = subprocess.run(["docker", "inspect", lab.host.docker.container_name], capture_output=True).returncode == 0
    folder = Path(lab.host.config_dir).parent
    aside = tmp_path / "earlier-lab-host"
    if not existed and folder.exists():
        shutil.move(folder, aside)
    try:
        run = subprocess.run(shlex.split(MAIN_JOB), cwd=repo, capture_output=True, text=True, timeout=900,
                             stdin=subprocess.DEVNULL)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "lab: up" in run.stdout
        assert "lab: ok," in run.stdout
        marks = [line.split()[1] for line in run.stdout.splitlines() if line.startswith("lab  ")]
        assert marks and set(marks) == {"ok"}
    finally:
        if not existed:
            subprocess.run(["docker", "rm", "-f", lab.host.docker.container_name], capture_output=True)
            shutil.rmtree(folder, ignore_errors=True)
            if aside.exists():
                shutil.move(aside, folder)
