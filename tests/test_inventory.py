"""hosts.yaml -> Host records: defaults, groups and patterns, local paths, and each bad key named in
one line."""

import re
from pathlib import Path

import pytest
from conftest import DEFAULT_IMAGE

from litedeploy.errors import InventoryError
from litedeploy.inventory import check_distinct, load_inventory, parse_inventory

MINIMAL = """
defaults:
  vars:
    aws_region: us-east-1
    models:
      - {name: a, model: bedrock/x}
hosts:
  one:
    address: one.example
"""


def parse(text: str):
    return parse_inventory(text, Path("/inv/hosts.yaml"), DEFAULT_IMAGE)


def test_repo_inventory_has_fox_as_in_the_source_documents(repo):
    fox = load_inventory(repo / "hosts.yaml").host("fox")
    assert (fox.address, fox.docker.compose_file, fox.config_dir, fox.port) == \
        ("fox.rewse.jp", "/etc/compose.yml", "/srv/litellm", 4000)
    assert fox.docker.image == "ghcr.io/berriai/litellm:v1.110.2"
    assert fox.vars["aws_region"] == "us-east-1"
    assert [m["name"] for m in fox.vars["models"]] == ["claude-3-7-sonnet", "claude-sonnet-4", "claude-opus-4"]


def test_lab_never_touches_the_machines_real_compose_file(repo):
    lab = load_inventory(repo / "hosts.yaml").host("lab")
    assert lab.docker.compose_file != "/etc/compose.yml"
    assert lab.docker.network_mode == "host" and lab.bind.startswith("127.")


def test_defaults_apply_and_hosts_override_them():
    inventory = parse(MINIMAL + "  two:\n    address: two.example\n    port: 8080\n    vars: {aws_region: eu-west-1}\n")
    one, two = inventory.host("one"), inventory.host("two")
    assert (one.port, two.port) == (4000, 8080)
    assert one.vars["aws_region"] == "us-east-1"
    # vars merge per key: the override keeps the models from the defaults
    assert two.vars["aws_region"] == "eu-west-1" and two.vars["models"] == [{"name": "a", "model": "bedrock/x"}]


def test_local_paths_are_taken_from_the_inventory_folder():
    host = parse(MINIMAL + "    ssh_key: keys/id\n    secrets_file: /abs/s.yaml\n").host("one")
    assert host.ssh_key == "/inv/keys/id"
    assert host.secrets_file == "/abs/s.yaml"


def test_derived_paths_follow_config_dir():
    host = parse(MINIMAL + "    config_dir: /opt/gw\n").host("one")
    assert (host.config_path, host.env_path, host.backup_dir) == \
        ("/opt/gw/config.yaml", "/opt/gw/litellm.env", "/opt/gw/backups")


def test_fab_address_finds_the_entry_and_refuses_ambiguity():
    inventory = parse(MINIMAL + "  two:\n    address: one.example\n    ssh_port: 2222\n")
    assert inventory.host_at("one.example", 2222).name == "two"
    with pytest.raises(InventoryError, match="several hosts have address one.example"):
        inventory.host_at("one.example", None)


@pytest.mark.parametrize("text, message", [
    ("hosts: [", "line 1 is not valid YAML"),
    ("- a\n- b\n", "expected a mapping"),
    ("hosts: {}\n", "'hosts' must map host names"),
    (MINIMAL + "    compose_fle: /x\n", "host 'one': unknown key 'compose_fle'"),
    (MINIMAL.replace("address: one.example", "port: 4000"), "host 'one': 'address' is required"),
    (MINIMAL + "    port: http\n", "'port' must be a port number"),
    (MINIMAL + "    port: true\n", "'port' must be a port number .1-65535., not True"),
    (MINIMAL + "    ssh_port: 70000\n", "'ssh_port' must be a port number"),
    (MINIMAL + "    bind: localhost\n", "'bind' must be an IP address"),
    (MINIMAL + "    container_name: 'my gateway'\n", "'container_name' must be a container name Docker accepts"),
    (MINIMAL + "    service_name: -x\n", "'service_name' must be a compose service name"),
    (MINIMAL + "    compose_project: My_Project\n", "'compose_project' must be a compose project name"),
    (MINIMAL + "    image: \"x\\n    privileged: true\"\n", "'image' must be an image reference"),
    (MINIMAL + "    sudo: 'yes'\n", "'sudo' must be true or false"),
    (MINIMAL + "    health_timeout: true\n", "'health_timeout' must be a positive number"),
    (MINIMAL.replace("address: one.example", "address: 'two words'"), "'address' must be a host name or IP address"),
    (MINIMAL + "    config_dir: /\n", "'config_dir' must be an absolute path on the host .not /."),
    (MINIMAL + "    marker: 'BEGIN {mark}'\n", "'marker' must be one comment line"),
    (MINIMAL + "    address: two.example\n", "line 10: duplicate key 'address'"),
    (MINIMAL + "    network_mode: overlay\n", "'network_mode' must be one of"),
    (MINIMAL + "    config_dir: srv/litellm\n", "'config_dir' must be an absolute path"),
    (MINIMAL + "    marker: '# litellm'\n", "'marker' must be one comment line .# .... containing {mark}"),
    (MINIMAL + "    vars: {models: [{name: a, model: x}, {name: a, model: y}]}\n", "model name 'a' appears twice"),
    (MINIMAL + "    vars: {models: [{model: a}]}\n", r"vars.models\[0\] needs a .name."),
    (MINIMAL + "    config_dir: /srv/a:b\n", "'config_dir' must be an absolute path on the host .not /. without :, . or %"),
    (MINIMAL + "    config_dir: /srv/$HOME\n", "'config_dir' must be an absolute path on the host .not /. without :"),
    (MINIMAL + "    config_dir: /srv/100%\n", "'config_dir' must be an absolute path on the host .not /. without :"),
    (MINIMAL + "    runtime: systemd\n    config_dir: /etc/lite llm\n", "'config_dir' must be a path without spaces"),
    (MINIMAL + "    service_name: '123'\n", "'service_name' must be a compose service name .* that YAML reads as text"),
    (MINIMAL + "    service_name: 'true'\n", "'service_name' must be a compose service name"),
    (MINIMAL + "    service_name: '1e3'\n", "'service_name' must be a compose service name"),  # 1000 to YAML 1.2
    (MINIMAL + "    container_name: x\n", "'container_name' must be a container name .* two characters at least"),
    (MINIMAL + "    config_dir: /srv/./litellm\n", "'config_dir' must be .* nor . or .. parts"),
    (MINIMAL + "    venv_root: /opt/100%\n", "'venv_root' must be an absolute path on the host .not /. without blanks"),
    (MINIMAL + "    compose_file: /etc/../compose.yml\n", "'compose_file' must be an absolute path on the host, without"),
    (MINIMAL + "    marker: '# {mark} litellm '\n", "'marker' must be one comment line .* without trailing blanks"),
    (MINIMAL.replace("  one:", "  a/b:"), "host name 'a/b' must be letters, digits"),
    (MINIMAL.replace("  one:", "  '!prod':"), "host name '!prod' must be letters, digits"),
])
def test_malformed_inventory_is_one_clear_error_naming_file_and_key(text, message):
    with pytest.raises(InventoryError, match=message) as caught:
        parse(text)
    assert str(caught.value).startswith("/inv/hosts.yaml:")
    assert "\n" not in str(caught.value)


def test_unknown_host_lists_the_known_ones():
    with pytest.raises(InventoryError, match=r"unknown host 'fax' \(known: one\)"):
        parse(MINIMAL).host("fax")


def test_groups_expand_to_their_hosts_and_are_checked():
    inventory = parse(MINIMAL + "  two:\n    address: two.example\ngroups:\n  prod: [one, two]\n")
    assert inventory.names("prod") == ["one", "two"] and inventory.names("one") == ["one"]
    with pytest.raises(InventoryError, match="group 'prod' names unknown host 'three'"):
        parse(MINIMAL + "groups:\n  prod: [one, three]\n")
    with pytest.raises(InventoryError, match="'one' is both a host and a group"):
        parse(MINIMAL + "groups:\n  one: [one]\n")


@pytest.mark.parametrize("pattern, selected", [
    ("web1", ["web1"]),
    ("web*", ["web1", "web2"]),
    ("prod:!fox2", ["fox1", "web1"]),
    ("prod,!fox2", ["fox1", "web1"]),
    ("fox*,web2", ["fox1", "fox2", "web2"]),
    ("!web1,prod", ["fox1", "fox2"]),  # an exclusion counts wherever it stands
    ("web1,web1,prod", ["web1", "fox1", "fox2"]),
    ("*", ["fox1", "fox2", "web1", "web2"]),  # hosts and the group prod: each host once
])
def test_host_patterns_select_hosts_and_groups(pattern, selected):
    hosts = "".join(f"  {name}:\n    address: {name}.example\n" for name in ("fox1", "fox2", "web1", "web2"))
    inventory = parse(MINIMAL.split("hosts:")[0] + f"hosts:\n{hosts}groups:\n  prod: [fox1, fox2, web1]\n")
    assert inventory.select(pattern) == selected


def test_a_pattern_that_selects_nothing_is_an_error_naming_it():
    inventory = parse(MINIMAL)
    with pytest.raises(InventoryError, match="host pattern 'db\\*' matches no host or group"):
        inventory.select("db*")
    with pytest.raises(InventoryError, match="host pattern 'one:!one' leaves no host"):
        inventory.select("one:!one")
    with pytest.raises(InventoryError, match=r"unknown host 'fax' \(known: one\)"):
        inventory.select("one,fax")


@pytest.mark.parametrize("line, where, written, read", [
    ("port: 0123", "hosts.fox.port", "0123", 83), ("ssh_port: 0600", "hosts.fox.ssh_port", "0600", 384),
    ("health_timeout: 1:30", "hosts.fox.health_timeout", "1:30", 90),
    ("vars: {models: [{name: x, rpm: 010}]}", "hosts.fox.vars.models[0].rpm", "010", 8),
])
def test_a_yaml_1_1_number_is_refused_by_key(line, where, written, read):
    """PyYAML reads these as YAML 1.1 does (octal, base 60); the user meant another number or text."""
    expected = f"hosts.yaml: {where}: {written} is read as {read} (a YAML 1.1"
    with pytest.raises(InventoryError, match=re.escape(expected)):
        parse_inventory(f"hosts:\n  fox:\n    address: fox.example\n    {line}\n", Path("hosts.yaml"), DEFAULT_IMAGE)


def test_the_same_numbers_quoted_or_without_leading_zeros_pass():
    text = 'hosts:\n  fox:\n    address: fox.example\n    port: 123\n    vars: {models: [{name: x}], note: "0123"}\n'
    assert parse_inventory(text, Path("hosts.yaml"), DEFAULT_IMAGE).host("fox").port == 123


@pytest.mark.parametrize("second, shared", [
    ({}, "container_name 'litellm'"),
    ({"container_name": "litellm-2"}, "service_name 'litellm'"),  # one compose file, one block of that name
    ({"container_name": "litellm-2", "service_name": "two"}, "marker '# {mark} ANSIBLE MANAGED BLOCK litellm'"),
    ({"container_name": "litellm-2", "service_name": "two", "marker": "'# {mark} two'", "config_dir": "/srv/two"},
     "port 4000"),
    ({"container_name": "litellm-2", "service_name": "two", "marker": "'# {mark} two'", "port": 4001},
     "config_dir '/srv/litellm'"),
])
def test_two_hosts_of_one_run_on_one_machine_may_not_take_the_same_container_port_or_files(second, shared):
    settings = ", ".join(f"{key}: {value}" for key, value in second.items())
    inventory = parse(f"""
hosts:
  one: {{address: m.example, vars: {{models: [{{name: a, model: bedrock/x}}]}}}}
  two: {{address: m.example, vars: {{models: [{{name: a, model: bedrock/x}}]}}, {settings}}}
""")
    with pytest.raises(InventoryError, match=re.escape(f"hosts 'one' and 'two' are both at m.example with {shared}")):
        check_distinct([inventory.host("one"), inventory.host("two")], Path("/inv/hosts.yaml"))


def test_hosts_of_one_machine_with_their_own_container_port_and_files_pass():
    inventory = parse("""
hosts:
  one: {address: m.example, vars: {models: [{name: a, model: bedrock/x}]}}
  two: {address: m.example, container_name: bb, port: 4001, config_dir: /srv/b, service_name: b, marker: "# {mark} b",
        vars: {models: [{name: a, model: bedrock/x}]}}
  elsewhere: {address: n.example, vars: {models: [{name: a, model: bedrock/x}]}}
""")
    check_distinct([inventory.host(name) for name in ("one", "two", "elsewhere")], Path("/inv/hosts.yaml"))


def test_an_instance_port_behind_one_hosts_front_door_is_claimed_against_the_others_port():
    """The door's instances bind their loopback ports (port + 1, port + 2 by default): a second
    host of the run on that port is refused before anything is sent, naming both settings."""
    from litedeploy.frontdoor import listening
    inventory = parse("""
hosts:
  one: {address: m.example, vars: {zero_downtime: true, models: [{name: a, model: bedrock/x}]}}
  two: {address: m.example, container_name: bb, port: 4002, config_dir: /srv/b, service_name: b, marker: "# {mark} b",
        vars: {models: [{name: a, model: bedrock/x}]}}
""")
    hosts = [inventory.host("one"), inventory.host("two")]
    check_distinct(hosts, Path("/inv/hosts.yaml"))  # its port alone: 4000 and 4002 do not meet
    with pytest.raises(InventoryError, match=re.escape(
            "with 'one''s vars.instance_ports and 'two''s port 4002: deployed in one run, the second would replace "
            "the first's; give one of them another vars.instance_ports or port")):
        check_distinct(hosts, Path("/inv/hosts.yaml"), listening)
