"""The one runner every task uses over many hosts (hosts here are plain records: no SSH)."""

import sys
import threading
import time

import pytest

from litedeploy.errors import DeployError
from litedeploy.fleet import report, run_hosts
from litedeploy.inventory import load_inventory


@pytest.fixture
def hosts(repo):
    from dataclasses import replace
    lab = load_inventory(repo / "hosts.yaml").host("lab")
    return [replace(lab, name=f"h{n}") for n in range(1, 5)]


def test_parallel_hosts_print_in_the_hosts_order_however_they_finish(hosts, capsys):
    running = []
    both = threading.Barrier(len(hosts))
    stdout = sys.stdout

    def act(host):
        running.append(host.name)
        both.wait(5)  # every host runs at once
        time.sleep(0.05 * (len(hosts) - int(host.name[1:])))  # the last host finishes first
        print(f"{host.name}: first line")
        print(f"{host.name}: second line")
        return host.name
    outcomes = run_hosts(hosts, act, parallel=4)
    assert [o.result for o in outcomes] == ["h1", "h2", "h3", "h4"] and all(o.ok for o in outcomes)
    assert capsys.readouterr().out.splitlines() == [f"h{n}: {which} line" for n in range(1, 5)
                                                   for which in ("first", "second")]
    assert sys.stdout is stdout and sorted(running) == ["h1", "h2", "h3", "h4"]


def test_a_failing_host_fails_alone_and_the_report_names_it(hosts, capsys):
    def act(host):
        if host.name == "h2":
            raise DeployError("h2: broken")
        return "fine"
    outcomes = run_hosts(hosts, act, parallel=2)
    assert [o.ok for o in outcomes] == [True, False, True, True]
    with pytest.raises(DeployError, match="^failed on 1 of 4 hosts: h2$"):
        report(outcomes)
    shown = capsys.readouterr()
    assert "error: h2: broken" in shown.err
    assert [line.split()[1:3] for line in shown.out.splitlines()[1:]] == [
        ["h1", "ok"], ["h2", "failed"], ["h3", "ok"], ["h4", "ok"]]


def test_a_rolling_run_stops_after_the_batch_with_a_failure(hosts):
    done = []

    def act(host):
        done.append(host.name)
        if host.name == "h2":
            raise DeployError("h2: broken")
    outcomes = run_hosts(hosts, act, parallel=10, serial=2)
    assert sorted(done) == ["h1", "h2"]
    assert [o.skipped for o in outcomes] == [False, False, True, True]
