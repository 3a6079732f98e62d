"""Every fact the one round trip reads, as pyinfra tests its facts: the command that prints it,
a sample of that output, and the value parsed from it. A fact without a row here fails
`test_every_fact_has_a_sample`."""

import base64
import json
from dataclasses import fields, replace
from operator import attrgetter

import pytest

from litedeploy import runtimes
from litedeploy.commands import compose, container, files, lock, unit
from litedeploy.commands.facts import FACTS, parse_facts
from litedeploy.facts import (
    DockerFacts,
    FileFacts,
    GatewayFacts,
    GatewayState,
    Holder,
    HostFacts,
    LockFacts,
    SystemdFacts,
)
from litedeploy.frontdoor import topology
from litedeploy.inventory import load_inventory
from litedeploy.session import facts_script


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


INSPECT = {"state": {"Status": "running", "Running": True, "StartedAt": "2026-11-30T10:00:00.5Z", "ExitCode": 0,
                     "Health": {"Status": "healthy"}},
           "restart_count": 1, "labels": {"com.docker.compose.project": "etc"}, "image": "img:v1",
           "image_id": "sha256:1", "ports": {"4000/tcp": [{"HostIp": "", "HostPort": "4000"}]},
           "network_mode": "etc_default"}
SHOW = ("ActiveState=active\nSubState=running\nNRestarts=2\nMainPID=41\n"
        "ExecMainStartTimestamp=Mon 2026-11-30 10:00:00 UTC\nExecMainStatus=0\nLoadState=loaded")
DOCKER_STATE = GatewayState("running", True, "2026-11-30T10:00:00.5Z", 1, 0, "healthy", "img:v1", "sha256:1", "etc",
                            "etc_default", ("0.0.0.0:4000->4000/tcp",))
UNIT_STATE = GatewayState("running", True, "2026-11-30T10:00:00+00:00", 2, 0, None, "", "", None, kind="service")


def with_tls(host):
    return replace(host, vars={**host.vars, "server_names": ["llm.example.com"],
                               "tls": {"certificate_pem": "TLS_CERTIFICATE_PEM", "private_key_pem": "TLS_KEY_PEM"}})


def with_acme(host):
    return replace(host, vars={**host.vars, "server_names": ["llm.example.com"], "tls": {"acme": {}}})


def commands(host, unit_host):
    """Each fact's command, by the fact's key (the word it prints, written out or formatted)."""
    managed = topology(host).managed_files(runtimes.of(host), host)
    contents = files.contents(host, managed)
    return {
        **{key: contents for key in ("service_file", "config_file", "env_file", "proxy_file", "real_service_file",
                                     "real_config_file", "real_env_file", "real_proxy_file", "notfile_service_file",
                                     "notfile_config_file", "notfile_env_file", "notfile_proxy_file", "config_mtime")},
        # vars.zero_downtime's containers: asked on a host without it only where its proxy is left.
        **{f"container_{role}": facts_script(host, runtimes.of(host), topology(host))[0]
           for role in ("blue", "green", "proxy")},
        "lock": lock.take(host, {"user": "ann"}) + lock.holder(host),
        "lock_live": lock.break_stale(host),
        "flavour": compose.FLAVOUR,
        "container": container.state(host),
        "image_digests": container.state(host, digests=True),
        "docker_unreachable": container.state(host),
        "wanted_image": container.wanted_image(host.docker.image),
        "wanted_arch": container.wanted_image(host.docker.image),
        "proxy_wanted_image": container.wanted_image("haproxy:3.2", prefix="proxy_"),
        "engine": container.ENGINE,
        "port_holder": container.port_holder(host.port),
        "service": unit.state(unit_host),
        # The systemd runtime's own: its proxy's unit, vars.zero_downtime's units.
        **{key: facts_script(unit_host, runtimes.of(unit_host), topology(unit_host))[0]
           for key in ("proxy_service_file", "real_proxy_service_file", "notfile_proxy_service_file")},
        **{f"service_{role}": facts_script(unit_host, runtimes.of(unit_host), topology(unit_host))[0]
           for role in ("blue", "green", "proxy")},
        # vars.tls's: the door's certificate and key; with vars.tls.acme, its HTTP-01 answers.
        **{key: facts_script(with_tls(host), runtimes.of(host), topology(with_tls(host)))[0]
           for key in ("certificate_file", "real_certificate_file", "notfile_certificate_file")},
        **{key: facts_script(with_acme(host), runtimes.of(host), topology(with_acme(host)))[0]
           for key in ("challenges_file", "real_challenges_file", "notfile_challenges_file", "pending_certificate_file",
                       "real_pending_certificate_file", "notfile_pending_certificate_file")},
        "venvs": unit.runtime_facts(unit_host),
        "service_user": unit.runtime_facts(unit_host),
    }


# key -> (sample output line, the fields it sets, each as PART.FIELD of HostFacts)
SAMPLES = {
    "service_file": (f"service_file {b64('services: {}')}", {"files.service_text": "services: {}"}),
    "config_file": (f"config_file {b64('model_list: []')}", {"files.config_text": "model_list: []"}),
    "env_file": (f"env_file {b64('K=v')}", {"files.env_text": "K=v"}),
    "real_service_file": (f"real_service_file {b64('/srv/real.yml')}",
                          {"files.real_paths": {"SERVICE": "/srv/real.yml"}}),
    "real_config_file": (f"real_config_file {b64('/srv/c')}", {"files.real_paths": {"CONFIG": "/srv/c"}}),
    "real_env_file": (f"real_env_file {b64('/srv/e')}", {"files.real_paths": {"ENV": "/srv/e"}}),
    "notfile_service_file": ("notfile_service_file 1", {"files.not_files": ("SERVICE",)}),
    "notfile_config_file": ("notfile_config_file 1", {"files.not_files": ("CONFIG",)}),
    "notfile_env_file": ("notfile_env_file 1", {"files.not_files": ("ENV",)}),
    "proxy_file": (f"proxy_file {b64('backend live')}", {"files.proxy_text": "backend live"}),
    "real_proxy_file": (f"real_proxy_file {b64('/srv/p')}", {"files.real_paths": {"PROXY": "/srv/p"}}),
    "notfile_proxy_file": ("notfile_proxy_file 1", {"files.not_files": ("PROXY",)}),
    **{f"container_{role}": (f"container_{role} {b64(json.dumps(INSPECT))}",
                             {"gateway.instances": {role: DOCKER_STATE}})
       for role in ("blue", "green", "proxy")},
    "config_mtime": ("config_mtime 1764496800", {"files.config_mtime": 1764496800.0}),
    "lock": (f"lock held {b64(json.dumps({'user': 'ann'}))}", {"lock.holder": {"user": "ann"},
                                                               "lock.acquired": False}),
    "lock_live": ("lock_live 4242", {"lock.live": "4242"}),
    "flavour": ("flavour v1", {"docker.compose_flavour": "v1"}),
    "container": (f"container {b64(json.dumps(INSPECT))}", {"gateway.state": DOCKER_STATE}),
    "image_digests": (f"image_digests {b64(json.dumps(['img@sha256:2']))}",
                      {"gateway.image_digests": ("img@sha256:2",)}),
    "docker_unreachable": ("docker_unreachable yes", {"docker.unreachable": True}),
    "wanted_image": (f"wanted_image {b64('null')}", {"docker.wanted_digests": ()}),
    "wanted_arch": ("wanted_arch arm64", {"docker.wanted_arch": "arm64"}),
    "proxy_wanted_image": (f"proxy_wanted_image {b64(json.dumps(['haproxy@sha256:3']))}",
                           {"docker.proxy_digests": ("haproxy@sha256:3",)}),
    "engine": ("engine 28.2.2 amd64", {"docker.engine_version": "28.2.2", "docker.engine_arch": "amd64"}),
    "port_holder": ("port_holder process python3 (pid 7)",
                    {"gateway.port_holder": Holder("process", "python3 (pid 7)")}),
    "service": (f"service {b64(SHOW)}", {"gateway.state": UNIT_STATE}),
    "proxy_service_file": (f"proxy_service_file {b64('[Unit]')}", {"files.proxy_service_text": "[Unit]"}),
    "real_proxy_service_file": (f"real_proxy_service_file {b64('/srv/u')}",
                                {"files.real_paths": {"PROXYUNIT": "/srv/u"}}),
    "notfile_proxy_service_file": ("notfile_proxy_service_file 1", {"files.not_files": ("PROXYUNIT",)}),
    "certificate_file": (f"certificate_file {b64('-----BEGIN')}", {"files.certificate_text": "-----BEGIN"}),
    "real_certificate_file": (f"real_certificate_file {b64('/srv/c')}", {"files.real_paths": {"CERT": "/srv/c"}}),
    "notfile_certificate_file": ("notfile_certificate_file 1", {"files.not_files": ("CERT",)}),
    "challenges_file": (f"challenges_file {b64('')}", {"files.challenges_text": ""}),
    "real_challenges_file": (f"real_challenges_file {b64('/srv/m')}", {"files.real_paths": {"MAP": "/srv/m"}}),
    "notfile_challenges_file": ("notfile_challenges_file 1", {"files.not_files": ("MAP",)}),
    "pending_certificate_file": (f"pending_certificate_file {b64('-----BEGIN')}",
                                 {"files.pending_certificate_text": "-----BEGIN"}),
    "real_pending_certificate_file": (f"real_pending_certificate_file {b64('/srv/p')}",
                                      {"files.real_paths": {"PENDING": "/srv/p"}}),
    "notfile_pending_certificate_file": ("notfile_pending_certificate_file 1", {"files.not_files": ("PENDING",)}),
    **{f"service_{role}": (f"service_{role} {b64(SHOW)}", {"gateway.instances": {role: UNIT_STATE}})
       for role in ("blue", "green", "proxy")},
    "venvs": ("venvs /opt/litellm/litellm-1-a /opt/litellm/litellm-2-b",
              {"systemd.venvs": ("/opt/litellm/litellm-1-a", "/opt/litellm/litellm-2-b")}),
    "service_user": ("service_user 1", {"systemd.service_user_exists": True}),
}


@pytest.fixture
def hosts(repo):
    inventory = load_inventory(repo / "hosts.yaml")
    return inventory.host("fox"), inventory.host("labsd")


def test_every_fact_has_a_sample():
    assert set(SAMPLES) == set(FACTS)


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_each_fact_is_printed_by_its_command_and_parsed_from_its_sample(key, hosts):
    host, unit_host = hosts
    command = commands(host, unit_host)[key]
    # The file facts' function prints its keys from the name it is given (`f service_file PATH`).
    printed = {"real": "real_%s", "notfile": "notfile_$1"}.get(key.split("_")[0], key)
    assert printed in command, f"the command of {key} does not print it"
    if "proxy_service" in key:  # a file only the systemd runtime manages
        host = unit_host
    if "certificate" in key:  # a file only a door with HTTPS has
        host = with_tls(host)
    if "challenges" in key or "pending" in key:  # files only a door with a certificate from an ACME CA has
        host = with_acme(host)
    managed = topology(host).managed_files(runtimes.of(host), host)
    paths = {"SERVICE": managed["service_file"], "CONFIG": host.config_path, "ENV": host.env_path,
             "PROXY": managed["proxy_file"], "PROXYUNIT": managed.get("proxy_service_file"),
             "CERT": managed.get("certificate_file"), "MAP": managed.get("challenges_file"),
             "PENDING": managed.get("pending_certificate_file")}
    line, fields = SAMPLES[key]
    facts = parse_facts(line, managed)
    for name, value in fields.items():
        if name == "files.real_paths":
            value = {paths[path]: real for path, real in value.items()}
        elif name == "files.not_files":
            value = tuple(paths[path] for path in value)
        assert attrgetter(name)(facts) == value, name


def test_a_docker_host_is_asked_the_docker_questions_and_a_systemd_host_its_units(hosts):
    host, unit_host = hosts
    docker, systemd = (facts_script(each, runtimes.of(each), topology(each))[0] for each in (host, unit_host))
    assert "docker inspect" in docker and "systemctl show" not in docker
    assert "systemctl show" in systemd and "docker inspect" not in systemd
    assert "/etc/systemd/system/litellm.service" in systemd and host.docker.compose_file in docker


def test_a_lock_line_of_neither_form_says_nothing():
    assert (parse_facts("lock gone").lock.holder, parse_facts("lock gone").lock.acquired) == (None, False)


def test_flat_field_names_build_each_part_and_an_unknown_one_is_refused():
    names = [each.name for part in (FileFacts, LockFacts, GatewayFacts, DockerFacts, SystemdFacts)
             for each in fields(part)]
    assert len(names) == len(set(names))  # so HostFacts.of can route every name to one part
    facts = HostFacts.of(env_text="K=v", acquired=True, state=None, unreachable=True, venvs=("/v",))
    assert facts == HostFacts(files=FileFacts(env_text="K=v"), lock=LockFacts(acquired=True),
                              docker=DockerFacts(unreachable=True), systemd=SystemdFacts(venvs=("/v",)))
    with pytest.raises(TypeError, match="lock_acquired"):
        HostFacts.of(lock_acquired=True)
