"""The steps runner (pure but for the log lines it asks the session for): undo in reverse, every
undo run whatever one before it did, and the outcome the audit line records."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from litedeploy.errors import DeployError, DeployFailed
from litedeploy.steps import Step, run


def session(log: list[str]) -> SimpleNamespace:
    """The boundary faked: the gateway's log lines, asked for once, and a redactor."""
    def remote_run(command, check=True):
        log.append("logs")
        return SimpleNamespace(stdout="a log line\n", stderr="")
    return SimpleNamespace(host=SimpleNamespace(name="fox"), remote=SimpleNamespace(run=remote_run),
                           runtime=SimpleNamespace(driver=SimpleNamespace(logs=lambda host, lines: ["logs"])),
                           redact=lambda text: text)


def test_a_failed_step_undoes_what_was_done_in_reverse_and_says_how_the_host_stands():
    log: list[str] = []

    def fail():
        raise DeployError("fox: it failed")
    steps = [Step("a", lambda: log.append("a"), undo=lambda: log.append("undo a")),
             Step("b", lambda: log.append("b"), undo=lambda: log.append("undo b")),
             Step("c", fail, undo=lambda: log.append("undo c"), undo_if_failed=True, failed="as it was")]
    with pytest.raises(DeployFailed) as raised:
        run(session(log), steps, watched=None)
    assert log == ["a", "b", "logs", "undo c", "undo b", "undo a"]
    assert str(raised.value) == "fox: it failed; rolled back: as it was" and raised.value.rolled_back


def test_an_undo_that_fails_leaves_the_others_to_run_and_the_rollback_is_said_to_have_failed():
    log: list[str] = []

    def fail():
        raise DeployError("fox: the new instance failed")

    def undo_fails():
        raise DeployError("fox: the single gateway did not answer again")
    steps = [Step("install", lambda: None, undo=lambda: log.append("files back")),
             Step("point", fail, undo=undo_fails, undo_if_failed=True)]
    with pytest.raises(DeployFailed) as raised:
        run(session(log), steps, watched=None)
    assert log == ["logs", "files back"]
    assert str(raised.value) == ("fox: the new instance failed; ROLLBACK FAILED too: fox: the single gateway did "
                                 "not answer again")
    assert raised.value.rolled_back is False
