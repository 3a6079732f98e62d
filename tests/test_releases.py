"""Releases kept on the host, the rollback chosen from them, and the deploy history (pure), and the
release script run by a real shell on real files."""

import base64
import json
import os
import re
import subprocess
from dataclasses import replace

import pytest

from litedeploy import runtimes
from litedeploy.audit import AuditRecord
from litedeploy.commands.files import RELEASES_KEPT, keep_release
from litedeploy.composefile import Markers, replace_block
from litedeploy.errors import DeployError
from litedeploy.facts import HostFacts
from litedeploy.frontdoor import topology
from litedeploy.inventory import load_inventory
from litedeploy.locking import owner
from litedeploy.releases import (
    Release,
    choose_release,
    history,
    migration_refusal,
    parse_releases,
    release_names,
    salt_key_refusal,
)

OLD = "ghcr.io/berriai/litellm:v1.110.2@sha256:" + "a" * 64
NEW = "ghcr.io/berriai/litellm:v1.84.0@sha256:" + "b" * 64


DOCKER = runtimes.named("docker")


@pytest.fixture
def fox(repo):
    return load_inventory(repo / "hosts.yaml").host("fox")


def release(fox, release_id: str, image: str, config: str, env: str = "K=v\n") -> Release:
    compose = replace_block("services:\n  web:\n    image: nginx\n", f"  litellm:\n    image: \"{image}\"\n",
                            Markers.from_template(fox.docker.marker), "f")
    return Release(release_id, {"compose.yml": compose, "config.yaml": config, "litellm.env": env})


def facts_of(fox, kept: Release) -> HostFacts:
    return HostFacts.of(service_text=kept.files["compose.yml"], config_text=kept.files["config.yaml"],
                        env_text=kept.files["litellm.env"], compose_flavour="v2")


def test_release_lines_become_releases_oldest_first():
    def line(rid, name, text):
        return f"release {rid} {name} {base64.b64encode(text.encode()).decode()}"

    output = "\n".join([line("20261123T120000Z-bbbbbb", "config.yaml", "b: 1\n"),
                        line("20261122T120000Z-aaaaaa", "config.yaml", "a: 1\n"),
                        line("20261122T120000Z-aaaaaa", "litellm.env", "K=v\n"), "motd text"])
    releases = parse_releases(output)
    assert [r.id for r in releases] == ["20261122T120000Z-aaaaaa", "20261123T120000Z-bbbbbb"]
    assert releases[0].files == {"config.yaml": "a: 1\n", "litellm.env": "K=v\n"}


def test_a_rollback_goes_to_the_newest_release_that_differs_from_what_runs(fox):
    first, second = release(fox, "1", OLD, "a: 1\n"), release(fox, "2", NEW, "a: 1\n")
    again = release(fox, "3", NEW, "a: 1\n")  # a later deploy that changed nothing we compare
    assert choose_release(fox, [first, second, again], facts_of(fox, again), None, DOCKER) is first
    assert choose_release(fox, [first, second, again], facts_of(fox, again), "2", DOCKER) is second


def test_an_unknown_release_or_nothing_to_go_back_to_is_an_error_naming_the_host(fox):
    only = release(fox, "20261123T120000Z-aaaaaa", OLD, "a: 1\n")
    with pytest.raises(DeployError, match=r"fox:/srv/litellm/backups/releases: no release 'nope' "
                                          r"\(kept: 20261123T120000Z-aaaaaa\)"):
        choose_release(fox, [only], facts_of(fox, only), "nope", DOCKER)
    with pytest.raises(DeployError, match="nothing to roll back to"):
        choose_release(fox, [only], facts_of(fox, only), None, DOCKER)


def test_a_release_gives_back_our_block_config_and_env(fox):
    kept = release(fox, "1", OLD, "a: 1\n", env="LITELLM_MASTER_KEY=sk-x\nAWS_REGION_NAME=us-east-1\n")
    desired = kept.desired(fox, frozenset({"LITELLM_MASTER_KEY"}), DOCKER)
    assert desired.service == f"  litellm:\n    image: \"{OLD}\"\n"
    assert (desired.config, desired.secret_names) == ("a: 1\n", ("LITELLM_MASTER_KEY",))
    assert kept.runs(fox, DOCKER) == OLD


def test_an_incomplete_release_is_refused_naming_it(fox):
    kept = release(fox, "20261123T120000Z-aaaaaa", OLD, "a: 1\n")
    broken = Release(kept.id, {name: text for name, text in kept.files.items() if name != "litellm.env"})
    with pytest.raises(DeployError, match="20261123T120000Z-aaaaaa/compose.yml: release .* is incomplete \\(litellm.env\\)"):
        broken.desired(fox, frozenset(), DOCKER)


def test_a_changed_image_on_a_host_with_a_database_needs_yes(fox):
    with_database = replace(fox, vars={**fox.vars, "database": True})
    assert "a rollback does not undo a migration" in migration_refusal(with_database, DOCKER, OLD, NEW, upgrade=False)
    assert migration_refusal(with_database, DOCKER, OLD, OLD.split("@")[0], upgrade=False) is None  # same tag
    assert migration_refusal(with_database, DOCKER, OLD, OLD.split("@")[0], upgrade=True) is not None
    assert migration_refusal(with_database, DOCKER, None, NEW, upgrade=True) is None  # a first deploy
    assert migration_refusal(fox, DOCKER, OLD, NEW, upgrade=True) is None


def test_history_reads_our_audit_lines_and_marks_kept_releases():
    lines = [json.dumps({"id": "1", "action": "deploy", "result": "ok", "user": "ann", "from": "pc", "image": OLD,
                         "changed": ["/etc/compose.yml"]}),
             "not json", json.dumps(["a list"]),
             json.dumps({"id": "2", "action": "rollback", "result": "ok", "rollback_to": "1"}),
             json.dumps({"id": "3", "action": "upgrade", "result": "failed", "error": "crash loop"})]
    entries = history(lines, {"1"})
    assert [(e.id, e.kept, e.detail) for e in entries] == [("1", True, ""), ("2", False, "back to 1"),
                                                           ("3", False, "crash loop")]
    assert entries[0].user == "ann@pc" and entries[0].image == OLD


def test_the_release_script_keeps_the_files_private_and_only_the_newest_releases(fox, tmp_path):
    host = fox.with_settings(compose_file=str(tmp_path / "compose.yml"), config_dir=str(tmp_path / "litellm"))
    os.makedirs(host.config_dir)
    for path, text in ((host.docker.compose_file, "services: {}\n"), (host.config_path, "a: 1\n"), (host.env_path, "K=v\n")):
        with open(path, "w") as out:
            out.write(text)
    ids = [f"20261123T1200{n:02d}Z-abcdef" for n in range(RELEASES_KEPT + 2)]
    for release_id in ids:
        subprocess.run(["sh", "-c", keep_release(host, release_id, None, release_names(DOCKER, topology(host).written(DOCKER, host)))], check=True)
    folder = tmp_path / "litellm/backups/releases"
    assert sorted(os.listdir(folder)) == ids[-RELEASES_KEPT:]
    newest = folder / ids[-1]
    assert sorted(os.listdir(newest)) == ["compose.yml", "config.yaml", "litellm.env"]
    assert (newest / "litellm.env").read_text() == "K=v\n"
    assert {oct(path.stat().st_mode & 0o777) for path in newest.iterdir()} == {"0o600"}
    assert oct(folder.stat().st_mode & 0o777) == "0o700"


def test_a_new_salt_key_needs_yes_only_where_a_database_holds_what_the_old_one_encrypted(fox):
    with_database = replace(fox, vars={**fox.vars, "database": True})
    held = "LITELLM_SALT_KEY=old-salt-0123456789\n"
    refusal = salt_key_refusal(with_database, held, "new-salt-0123456789")
    assert "would change from sha256:" in refusal and "old-salt" not in refusal and "new-salt" not in refusal
    assert salt_key_refusal(with_database, held, "old-salt-0123456789") is None
    assert salt_key_refusal(with_database, None, "new-salt-0123456789") is None  # a first deploy
    assert salt_key_refusal(fox, held, "new-salt-0123456789") is None


def test_an_audit_record_is_the_log_line_history_reads():
    record = AuditRecord.begin("rollback", "fox", None, owner())
    record.runs, record.rollback_to, record.result, record.changed = OLD, "1", "ok", ["/etc/compose.yml"]
    line = record.as_json()
    assert line["from"] == record.origin and "origin" not in line
    assert "error" not in line and "previous_image" not in line  # only when set
    assert {"commit", "restart", "rolled_back"} <= set(line)  # always, null or not
    (entry,) = history([json.dumps(line, sort_keys=True)], {record.id})
    assert (entry.action, entry.image, entry.detail, entry.kept, entry.changed) == (
        "rollback", OLD, "back to 1", True, ("/etc/compose.yml",))
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", record.id)
