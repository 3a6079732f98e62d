"""Which hosts a task acts on: --host, a group, fab's -H, or LITEDEPLOY_HOST."""

from types import SimpleNamespace

import pytest

from litedeploy.errors import InventoryError
from litedeploy.project import load_project
from litedeploy.tasks.target import hosts_of


@pytest.fixture
def project(repo):
    return load_project(repo, "hosts.yaml", "templates")


def names(hosts):
    return [host.name for host in hosts]


def test_host_option_wins_and_may_name_several(project, monkeypatch):
    monkeypatch.setenv("LITEDEPLOY_HOST", "fox")
    assert names(hosts_of(SimpleNamespace(), project, "lab")) == ["lab"]
    assert names(hosts_of(SimpleNamespace(), project, "lab,fox")) == ["lab", "fox"]


def test_fab_dash_h_wins_over_the_default_host(project, monkeypatch):
    monkeypatch.setenv("LITEDEPLOY_HOST", "fox")
    fab = SimpleNamespace(original_host="lab", host="lab", port=22)
    assert names(hosts_of(fab, project, None)) == ["lab"]


@pytest.mark.parametrize("dash_h, expected", [("root@127.0.0.1:22022", "lab"), ("10.213.1.2:2222", "labsd"),
                                               ("10.213.1.2", "lab1"), ("fox.rewse.jp", "fox")])
def test_fab_dash_h_with_an_address_and_port_finds_the_entry(project, dash_h, expected):
    """Fabric's own Connection, so its parsing of -H (which keeps the port only in .port) is the real one."""
    from fabric import Connection
    assert names(hosts_of(Connection(dash_h), project, None)) == [expected]


def test_fab_dash_h_with_a_port_no_entry_has_is_an_error_not_another_entry(project):
    from fabric import Connection
    with pytest.raises(InventoryError, match="no host has address fox.rewse.jp:2200"):
        hosts_of(Connection("fox.rewse.jp:2200"), project, None)


def test_the_default_host_applies_when_nothing_else_names_one(project, monkeypatch):
    monkeypatch.setenv("LITEDEPLOY_HOST", "fox")
    assert names(hosts_of(SimpleNamespace(), project, None)) == ["fox"]
