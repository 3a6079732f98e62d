"""The front door's pure part (`frontdoor.py`, its render and the topology's verb): the two
instances and their ports, which one the proxy's configuration makes live, the block of three
services and the proxy's configuration for either instance, and when a change is a switch."""

import datetime
import subprocess
from dataclasses import replace

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from litedeploy import runtimes, tls
from litedeploy.composefile import Markers, replace_block
from litedeploy.errors import RenderError
from litedeploy.facts import GatewayState, HostFacts, live_color
from litedeploy.frontdoor import INSTANCE_HEADER, ONE_GATEWAY, front_door, host_header, https, topology
from litedeploy.host import COLORS
from litedeploy.inventory import load_inventory
from litedeploy.render import load_templates, render_host
from litedeploy.secrets import SecretValues

DOCKER = runtimes.named("docker")
SECRETS = SecretValues({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE1", "AWS_SECRET_ACCESS_KEY": "secret/value+1",
                        "LITELLM_MASTER_KEY": "sk-master-123456", "LITELLM_SALT_KEY": "salt-123456"}, "s.enc.yaml")
RUNNING = GatewayState("running", True, "t0", 0, 0, "healthy", "x", "sha", "etc")
# How the proxy watches the live instance (the backup is never checked).
CHECKED = " check inter 1s observe layer4 error-limit 3 on-error mark-down"


@pytest.fixture
def fox(repo):
    host = load_inventory(repo / "hosts.yaml").host("fox")
    return replace(host, vars={**host.vars, "zero_downtime": True})


@pytest.fixture
def templates(repo):
    return load_templates(repo / "templates", repo / "models.yaml")


def test_the_instances_have_their_own_names_and_loopback_ports(fox):
    blue, green = (topology(fox).instance(DOCKER, fox, color) for color in COLORS)
    assert (blue.docker.container_name, blue.service_name, blue.port, blue.bind) == ("litellm-blue", "litellm-blue", 4001,
                                                                              "127.0.0.1")
    assert (green.port, DOCKER.door.proxy(fox).docker.container_name) == (4002, "litellm-proxy")
    chosen = replace(fox, vars={**fox.vars, "instance_ports": [9001, 9002]})
    assert front_door(chosen).ports == (9001, 9002)


def test_the_block_holds_the_proxy_and_both_instances_and_the_proxy_config_names_the_live_one(templates, fox):
    files = render_host(templates, fox, SECRETS, runtimes.of(fox))
    # fox's bridge network: the proxy on it under the gateway's name, its port published as the gateway's was.
    assert "  litellm-proxy:\n" in files.service and "network_mode: host" not in files.service
    assert '    ports:\n      - "4000:4000"\n    networks:\n      default:\n        aliases: ["litellm"]\n' \
        in files.service
    assert '"--port", "4001"' in files.service and '"--port", "4002"' in files.service
    assert '"127.0.0.1:4001:4001"' in files.service  # bridge: published on loopback only
    for color, port in (("blue", 4001), ("green", 4002)):
        config = files.proxy[color]
        assert live_color(config) == color
        idle, idle_port = ("green", 4002) if color == "blue" else ("blue", 4001)
        resolve = " resolvers docker init-addr last,libc,none"
        assert f"server {color} litellm-{color}:{port}{CHECKED}{resolve}\n" \
               f"    server {idle} litellm-{idle}:{idle_port} backup{resolve}\n" in config
        assert "bind :4000\n" in config and "nameserver docker 127.0.0.11:53" in config
        assert f"set-header {INSTANCE_HEADER} %[srv_name]\n" in config
    # On the host's network: it binds the host's address itself and reaches the instances on loopback.
    hosted = render_host(templates, fox.with_settings(network_mode="host"), SECRETS, runtimes.of(fox))
    assert "network_mode: host" in hosted.service and "aliases" not in hosted.service
    assert "bind 0.0.0.0:4000\n" in hosted.proxy["blue"] and "resolvers" not in hosted.proxy["blue"]
    assert f"server blue 127.0.0.1:4001{CHECKED}\n    server green 127.0.0.1:4002 backup\n" in hosted.proxy["blue"]
    # LiteLLM's production request timeout, and the time it may take for an answer's first byte.
    assert "timeout server 6010s" in files.proxy["blue"]
    production = replace(fox, vars={**fox.vars, "litellm_settings": {"request_timeout": 600}})
    assert "timeout server 610s" in render_host(templates, production, SECRETS, runtimes.of(production)).proxy["blue"]


def test_a_host_without_it_renders_one_service_and_no_proxy(templates, repo):
    fox = load_inventory(repo / "hosts.yaml").host("fox")
    files = render_host(templates, fox, SECRETS, runtimes.of(fox))
    assert files.proxy == {} and files.service.startswith("  litellm:\n") and "proxy" not in files.service


@pytest.mark.parametrize(("variables", "expected"), [
    ({"instance_ports": [4000, 4005]}, "vars.instance_ports must not hold the host's port 4000"),
    ({"instance_ports": [4005, 4005]}, "vars.instance_ports must be two different ports"),
    ({"instance_ports": [4005]}, "vars.instance_ports must be two different ports"),
    ({"proxy_image": "haproxy:3.2\n  privileged: true"}, "vars.proxy_image must be an image reference"),
    ({"zero_downtime": "yes"}, "vars.zero_downtime must be true or false"),
    # HAProxy cannot wait that long (its timeouts stop at about 24.8 days): refused, not a traceback.
    ({"litellm_settings": {"request_timeout": float("inf")}}, "request_timeout inf is longer than the proxy"),
    ({"litellm_settings": {"request_timeout": 10 ** 12}}, "request_timeout 1000000000000 is longer than the proxy"),
    ({"server_names": []}, "vars.server_names must be a list of host names"),
    ({"server_names": ["llm.example.com }"]}, "vars.server_names must be a list of host names"),
    ({"server_names": ["llm.example.com\n    http-request allow"]}, "vars.server_names must be a list of host names"),
    ({"general_settings": {"use_x_forwarded_for": False}}, "vars.general_settings.use_x_forwarded_for is set by "
                                                           "litedeploy behind the front door"),
])
def test_bad_settings_are_refused_by_key(templates, fox, variables, expected):
    with pytest.raises(RenderError, match=expected):
        render_host(templates, replace(fox, vars={**fox.vars, **variables}), SECRETS, runtimes.of(replace(fox, vars={**fox.vars, **variables})))


def test_on_systemd_a_template_unit_runs_both_instances_and_the_proxy_has_a_unit(templates, repo):
    labsd = load_inventory(repo / "hosts.yaml").host("labsd")
    labsd = replace(labsd, vars={**labsd.vars, "zero_downtime": True, "workers": 2})
    systemd = runtimes.of(labsd)
    files = render_host(templates, labsd, SECRETS, runtimes.of(labsd))
    assert topology(labsd).service_file(systemd, labsd) == "/etc/systemd/system/litellm@.service"
    assert "--host 127.0.0.1 --port %i --num_workers 2" in files.service
    # Each instance its own runtime folder: systemd removes it when that instance stops.
    assert "RuntimeDirectory=litellm-%i\n" in files.service
    assert files.proxy_service is not None
    assert "ExecStart=/usr/sbin/haproxy -Ws -f /etc/litellm/proxy/haproxy.cfg\n" in files.proxy_service
    assert "stats socket /run/litellm-proxy/admin.sock" in files.proxy["blue"]
    blue = topology(labsd).instance(systemd, labsd, "blue")
    assert (blue.service_name, blue.port, str(systemd.driver.holder(blue))) == ("litellm@4001", 4001,
                                                                               "service litellm@4001")
    assert f"server green 127.0.0.1:4002{CHECKED}\n    server blue 127.0.0.1:4001 backup\n" in files.proxy["green"]


@given(st.text(max_size=200))
def test_any_proxy_config_text_names_at_most_a_known_instance(text):
    assert live_color(text) in (None, "blue", "green")


def settled(host, files, live="blue", **changes) -> HostFacts:
    compose = replace_block("services: {}\n", files.service, Markers.from_template(host.docker.marker), "f")
    return HostFacts.of(**{"service_text": compose, "config_text": files.config, "env_text": files.env,
                           "compose_flavour": "v2", "state": RUNNING, "proxy_text": files.proxy[live],
                           "instances": {live: RUNNING, "proxy": RUNNING}, **changes})


def test_a_change_is_a_switch_and_a_settled_host_is_left_alone(templates, fox):
    files = render_host(templates, fox, SECRETS, runtimes.of(fox))
    layout = topology(fox)
    assert layout.plan(DOCKER, fox, files, settled(fox, files)).restart is None
    assert layout.plan(DOCKER, fox, replace(files, config=files.config + "# changed\n"),
                       settled(fox, files)).restart == "switch"
    # The proxy or the live instance down, the proxy's configuration changed, no proxy yet: a switch heals it.
    stopped = replace(RUNNING, running=False, status="exited")
    for facts in (settled(fox, files, instances={"blue": RUNNING, "proxy": stopped}),
                  settled(fox, files, instances={"blue": stopped, "proxy": RUNNING}),
                  settled(fox, files, proxy_text=files.proxy["green"]),
                  settled(fox, files, proxy_text=None)):
        assert layout.plan(DOCKER, fox, files, facts).restart == "switch"


def test_turning_it_off_is_a_switch_back_to_the_single_gateway(templates, fox, repo):
    files = render_host(templates, fox, SECRETS, runtimes.of(fox))
    plain = load_inventory(repo / "hosts.yaml").host("fox")
    single = render_host(templates, plain, SECRETS, runtimes.of(plain))
    assert topology(plain).plan(DOCKER, plain, single, settled(fox, files)).restart == "switch"


def test_the_proxy_image_is_pinned_as_the_gateway_is(templates, fox):
    layout, digest = topology(fox), "sha256:" + "b" * 64
    files = render_host(templates, fox, SECRETS, runtimes.of(fox))
    facts = settled(fox, files)
    pulled = []

    def pull(image):
        pulled.append(image)
        return (f"haproxy@{digest}",)
    # Nothing on the host yet: pulled, then pinned to the digest it came with.
    assert layout.pin(DOCKER, fox, facts, False, pull).vars["proxy_image"] == f"haproxy:3.2@{digest}"
    assert pulled == ["haproxy:3.2"]
    # The host's copy of the tag, without a pull; then the digest our block runs, even if the tag moved.
    held = settled(fox, files, proxy_digests=(f"haproxy@{digest}",))
    assert layout.pin(DOCKER, fox, held, False, None).vars["proxy_image"] == f"haproxy:3.2@{digest}"
    pinned = render_host(templates, replace(fox, vars={**fox.vars, "proxy_image": f"haproxy:3.2@{digest}"}), SECRETS,
                         DOCKER)
    deployed = settled(fox, pinned, proxy_digests=("haproxy@sha256:" + "c" * 64,))
    assert layout.pin(DOCKER, fox, deployed, False, None).vars["proxy_image"] == f"haproxy:3.2@{digest}"
    # An upgrade pulls the tag again.
    pulled.clear()
    layout.pin(DOCKER, fox, deployed, True, pull)
    assert pulled == ["haproxy:3.2"]


# Stand-ins for the host's `ss` and `docker` (each call logged, the port's listeners counted in a
# file): what a generated script does, run by the real shell.
STAND_INS = {
    "ss": 'for i in $(seq 1 "$(cat "$STATE/listeners")"); do echo LISTEN; done\n',
    "docker": """echo "$*" >> "$STATE/calls"
n=$(cat "$STATE/listeners")
case "$1 $2" in
  "run -d") [ -z "$RELIEF_FAILS" ] && echo $((n + 1)) > "$STATE/listeners"; echo id;;
  "stop litellm-proxy"|"stop litellm") echo $((n - 1)) > "$STATE/listeners";;
  "compose -f") case "$*" in *--no-start*) ;; *) echo $((n + 1)) > "$STATE/listeners";; esac; exit "${UP_EXIT:-0}";;
  "inspect --format") echo running;;
esac
exit 0
""",
}


def run_on_stand_ins(tmp_path, script: str, listeners: int = 1, **env: str) -> tuple[int, list[str]]:
    """SCRIPT run by sh with the stand-ins first on PATH; its exit status and the docker calls made."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in STAND_INS.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "listeners").write_text(str(listeners))
    (tmp_path / "calls").write_text("")
    done = subprocess.run(["sh", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin", "STATE": str(tmp_path), **env},
                          capture_output=True, text=True, timeout=60)
    return done.returncode, [call.split(" ")[0] + " " + call.split(" ")[-1] if call.startswith("compose") else call
                             for call in (tmp_path / "calls").read_text().splitlines()]


def test_a_change_that_makes_the_proxy_anew_keeps_a_second_one_on_its_port_on_the_hosts_network(templates, fox,
                                                                                              tmp_path):
    """Where the proxy's service changes on the host's network: a relief of the running image, as its
    user, on its files, listening before the old proxy stops and stopped softly once the new one
    listens; the old one stopped and removed, not recreated (compose v1 cannot on newer engines)."""
    host = fox.with_settings(network_mode="host", port=443)
    facts = settled(host, render_host(templates, host, SECRETS, DOCKER))
    markers = Markers.from_template(host.docker.marker)

    def after(**variables) -> str:
        changed = render_host(templates, replace(host, vars={**host.vars, **variables}), SECRETS, DOCKER)
        return replace_block(facts.files.service_text, changed.service, markers, "f")
    up = DOCKER.door.up(host, facts, after(stop_grace_period="50s"))
    assert isinstance(up, str)
    relief = ("run -d --rm --name litellm-proxy-relief --user 0:0 --cap-drop ALL --cap-add NET_BIND_SERVICE --network "
              "host -v /srv/litellm/proxy:/usr/local/etc/haproxy:ro haproxy:3.2 haproxy -db -f "
              "/usr/local/etc/haproxy/haproxy.cfg")
    status, calls = run_on_stand_ins(tmp_path, up)
    assert (status, calls) == (0, ["rm -f litellm-proxy-relief", relief, "stop litellm-proxy", "rm -f litellm-proxy",
                                   "compose litellm-proxy", "kill --signal USR1 litellm-proxy-relief"])
    # The new proxy fails: the relief goes at once, and the failure is the script's.
    status, calls = run_on_stand_ins(tmp_path, up, UP_EXIT="3")
    assert status == 3 and calls[-2:] == ["compose litellm-proxy", "kill --signal USR1 litellm-proxy-relief"]
    # A relief that never listens is removed and the proxy made anew without it (a gap, not a failure).
    status, calls = run_on_stand_ins(tmp_path, up.replace("tries=300", "tries=3"), RELIEF_FAILS="1")
    assert status == 0 and calls[2:] == ["rm -f litellm-proxy-relief", "stop litellm-proxy", "rm -f litellm-proxy",
                                         "compose litellm-proxy"]
    # Nothing changed, or nothing ran before: compose alone.
    compose_up = DOCKER.driver.verbs(DOCKER.door.proxy(host), facts).up()
    assert DOCKER.door.up(host, facts, after()) == DOCKER.door.up(host, facts, None) == compose_up
    # Another user (root for port 443, the image's own for 8443) cannot share the port.
    unprivileged = host.with_settings(port=8443)
    moved_up = replace_block(facts.files.service_text, render_host(templates, unprivileged, SECRETS, DOCKER).service,
                             markers, "f")
    assert "relief" not in str(DOCKER.door.up(unprivileged, facts, moved_up))
    # Docker publishes a bridge network's port for one container: nothing can share it.
    bridge_facts = settled(fox, render_host(templates, fox, SECRETS, DOCKER))
    moved = render_host(templates, replace(fox, vars={**fox.vars, "stop_grace_period": "50s"}), SECRETS, DOCKER)
    bridged = DOCKER.door.up(fox, bridge_facts, replace_block(bridge_facts.files.service_text, moved.service, markers,
                                                              "f"))
    assert "relief" not in str(bridged)
    assert run_on_stand_ins(tmp_path, str(bridged))[1] == ["stop litellm-proxy", "rm -f litellm-proxy",
                                                           "compose litellm-proxy"]


@pytest.mark.parametrize("runtime", ["docker", "systemd"])
def test_turning_it_on_makes_the_proxy_first_and_starts_it_the_moment_the_gateway_frees_the_port(templates, fox,
                                                                                                runtime):
    host = fox.with_settings(runtime=runtime) if runtime == "systemd" else fox
    chosen = runtimes.named(runtime)
    facts = HostFacts.of(compose_flavour="v2", state=RUNNING)
    up = chosen.door.up(host, facts, None, stopping=["docker", "stop", "litellm"])
    assert isinstance(up, str) and subprocess.run(["sh", "-n", "-c", up]).returncode == 0
    made = up.index("up --no-start") if runtime == "docker" else up.index("systemctl enable")
    stop, free = up.index("setsid nohup sh -c 'docker stop litellm'"), up.index("sport = :4000")
    start = up.index("docker start litellm-proxy" if runtime == "docker" else "systemctl start litellm-proxy")
    assert made < stop < free < start
    # Within the gateway's grace period (Docker's 10 s, systemd's 90 s) and 30 s more, in 0.05 s tries.
    assert f"tries={(40 if runtime == 'docker' else 120) * 20}" in up


def test_turning_it_on_stops_the_gateway_only_once_the_proxy_is_made(fox, tmp_path):
    facts = HostFacts.of(compose_flavour="v2", state=RUNNING)
    up = DOCKER.door.up(fox, facts, None, stopping=["docker", "stop", "litellm"])
    assert isinstance(up, str)
    # compose could not make it: the gateway is never told to stop, and the way back knows it.
    status, calls = run_on_stand_ins(tmp_path, up, UP_EXIT="1")
    assert (status, calls) == (1, ["compose litellm-proxy"])
    status, calls = run_on_stand_ins(tmp_path, up)
    assert status == 0 and calls[0] == "compose litellm-proxy" and calls[-1] == "start litellm-proxy"
    assert "stop litellm" in calls


def test_a_kept_service_text_says_whether_it_ran_instances(templates, fox, repo):
    inventory = load_inventory(repo / "hosts.yaml")
    for single in (inventory.host("fox"), inventory.host("labsd")):
        both = replace(single, vars={**single.vars, "zero_downtime": True})
        runtime = runtimes.of(single)
        one, behind = (render_host(templates, host, SECRETS, runtime).service for host in (single, both))
        assert not runtime.door.runs_instances(single, one) and runtime.door.runs_instances(single, behind)
        # What a rollback says of a release of the other shape: the setting it was kept under.
        assert (topology(single).kept_under(runtime, single, behind), topology(both).kept_under(runtime, both, one)) \
            == ("on", "off")
        assert topology(single).kept_under(runtime, single, one) is topology(both).kept_under(runtime, both, behind) \
            is None


def _rendered(templates, host, **variables):
    host = replace(host, vars={**host.vars, **variables})
    return render_host(templates, host, SECRETS, runtimes.of(host))


def test_the_instances_are_stopped_with_the_grace_litellms_drain_needs(templates, fox, repo):
    """Docker's default grace (10 s) would cut what LiteLLM finishes in its drain (30 s by default);
    the proxy, which holds the same streams, stops with the same grace."""
    service = _rendered(templates, fox).service
    assert service.count('stop_grace_period: "40s"') == 3  # the proxy and both instances
    drained = _rendered(templates, fox, env={"GRACEFUL_SHUTDOWN_TIMEOUT": "120"}).service
    assert drained.count('stop_grace_period: "130s"') == 3
    assert _rendered(templates, fox, stop_grace_period="75s").service.count('stop_grace_period: "75s"') == 3
    labsd = load_inventory(repo / "hosts.yaml").host("labsd")
    files = _rendered(templates, labsd, zero_downtime=True)
    assert "TimeoutStopSec=40s\n" in files.service and "TimeoutStopSec=40s\n" in (files.proxy_service or "")
    # Only the instances' template unit never gives up at boot; a single gateway's unit is as it was.
    assert "StartLimitIntervalSec=0\n" in files.service and "StartLimitIntervalSec=0\n" in files.proxy_service
    assert "StartLimitIntervalSec" not in _rendered(templates, labsd).service
    # The single gateway keeps the runtime's own default.
    assert "stop_grace_period" not in _rendered(templates, fox, zero_downtime=False).service


def test_the_proxy_waits_for_the_longest_timeout_litellm_allows(templates, fox):
    """A model's own timeout outlasts request_timeout in LiteLLM: the proxy waits for it too."""
    models = [{"name": "claude-sonnet-4", "timeout": 900}, {"name": "claude-opus-4"}]
    config = _rendered(templates, fox, litellm_settings={"request_timeout": 30}, models=models).proxy["blue"]
    assert "timeout server 910s" in config and "timeout client 910s" in config
    short = _rendered(templates, fox, litellm_settings={"request_timeout": 30}, models=models[1:]).proxy["blue"]
    assert "timeout server 40s" in short
    with pytest.raises(RenderError, match="vars.models claude-sonnet-4's timeout 10000000 is longer than the proxy"):
        _rendered(templates, fox, models=[{"name": "claude-sonnet-4", "timeout": 10 ** 7}])


def test_the_instances_start_only_when_named_and_a_privileged_port_binds_as_root_without_capabilities(templates, fox):
    service = _rendered(templates, fox).service
    assert 'profiles: ["litellm-blue"]' in service and 'profiles: ["litellm-green"]' in service
    assert "user:" not in service
    privileged = _rendered(templates, fox.with_settings(port=443, network_mode="host"))
    assert 'user: "0:0"\n    cap_drop: ["ALL"]\n    cap_add: ["NET_BIND_SERVICE"]' in privileged.service
    assert "stats socket /tmp/admin.sock " in privileged.proxy["blue"]
    # In the compose network's own namespace Docker lets its user bind it.
    assert "user:" not in _rendered(templates, replace(fox, port=443)).service


def test_a_setting_that_needs_litellms_licence_is_named_before_connecting(templates, fox):
    with pytest.raises(RenderError, match=r"vars.general_settings.allowed_ips needs LiteLLM's Enterprise licence, and "
                                          r"LiteLLM exits at start without one; add LITELLM_LICENSE"):
        _rendered(templates, fox, general_settings={"allowed_ips": ["10.0.0.1"]})
    licensed = SecretValues({**SECRETS, "LITELLM_LICENSE": "licence-1"}, SECRETS.source)
    allowed = replace(fox, vars={**fox.vars, "general_settings": {"allowed_ips": ["10.0.0.1"]},
                                 "secret_env": ["LITELLM_LICENSE"]})
    assert "allowed_ips" in render_host(templates, allowed, licensed, runtimes.of(allowed)).config


def test_the_door_alone_names_the_client_and_litellm_believes_only_it(templates, fox, repo):
    """The door sets X-Forwarded-For to the address it was connected from (a client's own is
    replaced, not appended to: LiteLLM reads the header whole), and LiteLLM reads it only behind it."""
    files = render_host(templates, fox, SECRETS, runtimes.of(fox))
    for config in files.proxy.values():
        assert "http-request set-header X-Forwarded-For %[src]\n" in config and "option forwardfor" not in config
        assert all(f"http-request del-header {header}\n" in config for header in
                   ("Forwarded", "X-Real-IP", "X-Forwarded-Proto", "X-Forwarded-Host")) and "deny" not in config
    assert yaml.safe_load(files.config)["general_settings"]["use_x_forwarded_for"] is True
    single = load_inventory(repo / "hosts.yaml").host("fox")
    alone = render_host(templates, single, SECRETS, runtimes.of(single))
    assert "use_x_forwarded_for" not in yaml.safe_load(alone.config)["general_settings"]
    # Without the door it is the admin's own (behind a proxy of theirs).
    own = replace(single, vars={**single.vars, "general_settings": {"use_x_forwarded_for": True}})
    assert yaml.safe_load(render_host(templates, own, SECRETS, runtimes.of(own)).config)["general_settings"] == \
        {"master_key": "os.environ/LITELLM_MASTER_KEY", "use_x_forwarded_for": True}
    assert host_header(single) == "127.0.0.1:4000"


def test_only_the_gateways_names_pass_the_door(templates, fox):
    named = replace(fox, vars={**fox.vars, "server_names": ["LLM.example.com", "10.0.0.5"]})
    files = render_host(templates, named, SECRETS, runtimes.of(named))
    # One Host header, read whole; on fox's compose network also the service name its neighbours call.
    deny = "http-request deny deny_status 421 unless { req.hdr_cnt(host) eq 1 } { req.fhdr(host),lower -m str " \
           "llm.example.com llm.example.com:4000 10.0.0.5 10.0.0.5:4000 litellm litellm:4000 }\n"
    assert all(deny in config for config in files.proxy.values())
    hosted = named.with_settings(network_mode="host")
    assert "10.0.0.5:4000 }\n" in render_host(templates, hosted, SECRETS, runtimes.of(hosted)).proxy["blue"]
    # litedeploy's own requests (verify, smoke, status) ask for the first name.
    assert host_header(named) == "llm.example.com:4000"
    without = replace(named, vars={**named.vars, "zero_downtime": False})
    with pytest.raises(RenderError, match="vars.server_names are checked by the front door; set vars.zero_downtime"):
        render_host(templates, without, SECRETS, runtimes.of(without))


def tls_secrets():
    """SECRETS with a certificate for llm.example.com from a CA of its own, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llm.example.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=60))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("llm.example.com")]), critical=False)
                   .sign(key, hashes.SHA256()))
    return SecretValues({**SECRETS, "TLS_CERTIFICATE_PEM": certificate.public_bytes(serialization.Encoding.PEM).decode(),
                         "TLS_PRIVATE_KEY_PEM": key.private_bytes(serialization.Encoding.PEM,
                                                                  serialization.PrivateFormat.PKCS8,
                                                                  serialization.NoEncryption()).decode()},
                        SECRETS.source)


TLS = {"certificate_pem": "TLS_CERTIFICATE_PEM", "private_key_pem": "TLS_PRIVATE_KEY_PEM"}


def test_https_turns_the_door_on_and_serves_the_certificate_from_the_secrets_file_only(templates, repo):
    plain = load_inventory(repo / "hosts.yaml").host("fox")  # no zero_downtime: vars.tls brings the door
    host = replace(plain, vars={**plain.vars, "tls": TLS, "server_names": ["llm.example.com"]})
    secrets = tls_secrets()
    files = render_host(templates, host, secrets, runtimes.of(host))
    assert files.certificate == secrets["TLS_CERTIFICATE_PEM"] + secrets["TLS_PRIVATE_KEY_PEM"]
    config = files.proxy["blue"]
    assert "    bind :4000 ssl crt /usr/local/etc/haproxy/gateway.pem alpn http/1.1\n" in config
    assert "ssl-default-bind-options prefer-client-ciphers ssl-min-ver TLSv1.2 no-tls-tickets" in config
    assert "http-request set-header X-Forwarded-Proto https" in config
    # The proxy reads the key as root, with no capability but binding a port; its socket where root may write.
    assert 'user: "0:0"\n    cap_drop: ["ALL"]' in files.service
    assert "stats socket /tmp/admin.sock" in config
    for text in (files.service, files.config, files.env, *files.proxy.values()):
        assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text
    changes = topology(host).plan(DOCKER, host, files, HostFacts()).changes
    (bundle,) = [change for change in changes if change.path == "/srv/litellm/proxy/gateway.pem"]
    assert (bundle.mode, bundle.shown) == ("0600", False)


@pytest.mark.parametrize("variables, expected", [
    ({"tls": TLS}, "vars.tls needs vars.server_names"),
    ({"tls": TLS, "server_names": ["other.example.com"]}, "would be refused by a client asking for other.example.com"),
    ({"tls": {**TLS, "private_key_pem": "NOT_THERE"}, "server_names": ["llm.example.com"]},
     "NOT_THERE (vars.tls.private_key_pem) is not in the secrets file"),
    ({"tls": {"certificate_pem": "TLS_CERTIFICATE_PEM"}, "server_names": ["llm.example.com"]},
     "vars.tls must be a mapping with certificate_pem and private_key_pem"),
])
def test_https_settings_that_cannot_serve_are_refused_by_key(templates, fox, variables, expected):
    with pytest.raises(RenderError) as raised:
        render_host(templates, replace(fox, vars={**fox.vars, **variables}), tls_secrets(), runtimes.of(fox),
                    datetime.datetime.now(datetime.timezone.utc))  # a deploy's: the chain is verified then
    assert expected in str(raised.value)


def test_https_is_refused_on_systemd_for_now(templates, repo):
    host = load_inventory(repo / "hosts.yaml").host("labsd")
    host = replace(host, vars={**host.vars, "tls": TLS, "server_names": ["llm.example.com"]})
    with pytest.raises(RenderError, match="vars.tls is built for the docker runtime so far"):
        render_host(templates, host, tls_secrets(), runtimes.of(host))


def test_litedeploys_own_requests_speak_https_to_the_door_and_plain_http_to_the_instances(repo):
    """With the instances on their default ports (port + 1, port + 2): an instance's own settings
    would put a door of its own on other ports, so the host's door decides."""
    plain = load_inventory(repo / "hosts.yaml").host("fox")
    host = replace(plain, vars={**plain.vars, "server_names": ["llm.example.com"], "tls": {**TLS, "ca_file": "/ca.pem"}})
    door = topology(host).door
    assert https(host, door) == ("llm.example.com", "/ca.pem")
    for color in COLORS:
        assert https(topology(host).instance(DOCKER, host, color), door) is None
    assert https(replace(host, vars={**host.vars, "tls": True}), door) is None  # the render names it


def test_turning_https_off_moves_the_key_among_the_backups(repo):
    plain = load_inventory(repo / "hosts.yaml").host("fox")
    door_only = replace(plain, vars={**plain.vars, "zero_downtime": True})
    layout = topology(door_only)  # the settings of today, HTTPS gone: the topology before is worked out from them
    assert "/srv/litellm/proxy/gateway.pem" in layout.leftovers(DOCKER, door_only, layout)
    assert "/srv/litellm/proxy/gateway.pem" in ONE_GATEWAY.leftovers(DOCKER, plain, layout)


def test_an_acme_certificate_adds_plain_http_for_the_ca_and_a_redirect_and_no_certificate_until_issued(templates, repo):
    plain = load_inventory(repo / "hosts.yaml").host("fox")  # bridge networking: the HTTP-01 port is published too
    host = replace(plain, vars={**plain.vars, "tls": {"acme": {"email": "ops@example.com"}},
                                "server_names": ["LLM.example.com"]})
    files = render_host(templates, host, SECRETS, runtimes.of(host))
    assert files.certificate is None  # status, smoke, --check: the certificate is the host's own
    config = files.proxy["green"]
    assert "    bind :4000 ssl crt /usr/local/etc/haproxy/gateway.pem alpn http/1.1\n" in config
    assert "\nfrontend acme\n    #" in config and "    bind :80\n" in config
    assert "map(/usr/local/etc/haproxy/acme-challenges.map)" in config
    acme = config[config.index("frontend acme"):]
    # The answers for any Host (a name being added is asked for before the door lists it), then the names.
    assert acme.index("acme-challenge/") < acme.index("deny_status 421") < acme.index("redirect location")
    assert "req.fhdr(host),lower,field(1,:) -m str llm.example.com }" in config
    assert "redirect location https://%[req.fhdr(host),field(1,:)]:4000%[capture.req.uri] code 301" in config
    assert '      - "80:80"\n' in files.service and '      - "4000:4000"\n' in files.service
    changes = topology(host).plan(DOCKER, host, files, HostFacts()).changes
    assert [(change.new, change.mode) for change in changes if change.path.endswith("/acme-challenges.map")] == \
        [("", "0644")]
    assert not [change for change in changes if change.path.endswith("gateway.pem")]
    own = tls_secrets()
    issued = tls.from_file(own["TLS_CERTIFICATE_PEM"] + own["TLS_PRIVATE_KEY_PEM"], "x")
    with_port = replace(host, vars={**host.vars, "tls": {"acme": {"http_port": 8080}}, "server_names": ["llm.example.com"]})
    files = render_host(templates, with_port, SECRETS, runtimes.of(host), issued=issued)
    assert files.certificate == issued.text and "    bind :8080\n" in files.proxy["blue"]


@pytest.mark.parametrize("acme", [
    {"directory": "http://acme.example.com/dir"}, {"email": "not an address"}, {"http_port": 0},
    {"renew_before_days": 90}, {"renew_before_days": True}, {"profile": "shortlived"}, "yes"])
def test_acme_settings_out_of_shape_are_refused_by_key(templates, fox, acme):
    host = replace(fox, vars={**fox.vars, "tls": {"acme": acme}, "server_names": ["llm.example.com"]})
    with pytest.raises(RenderError, match=r"vars.tls must be a mapping with certificate_pem .* or acme:"):
        render_host(templates, host, SECRETS, runtimes.of(host))


def test_the_acme_port_is_the_doors_own(templates, fox):
    host = replace(fox, vars={**fox.vars, "tls": {"acme": {"http_port": 4000}}, "server_names": ["llm.example.com"]})
    with pytest.raises(RenderError, match="vars.tls.acme.http_port 4000 is the host's port or an instance's"):
        render_host(templates, host, SECRETS, runtimes.of(host))


def test_an_acme_certificate_is_one_or_the_other_with_an_own_one(templates, fox):
    host = replace(fox, vars={**fox.vars, "tls": {**TLS, "acme": {}}, "server_names": ["llm.example.com"]})
    with pytest.raises(RenderError, match="vars.tls must be"):
        render_host(templates, host, tls_secrets(), runtimes.of(host))


def test_a_new_certificate_alone_reloads_the_proxy_and_with_anything_else_is_a_switch(templates, repo):
    plain = load_inventory(repo / "hosts.yaml").host("fox")
    host = replace(plain, vars={**plain.vars, "tls": TLS, "server_names": ["llm.example.com"]})
    old, new = tls_secrets(), tls_secrets()
    before = render_host(templates, host, old, runtimes.of(host))
    layout = topology(host)
    held = settled(host, before, certificate_text=before.certificate)
    assert layout.plan(DOCKER, host, before, held).restart is None
    renewed = render_host(templates, host, new, runtimes.of(host))
    plan = layout.plan(DOCKER, host, renewed, held)
    assert plan.restart == "reload" and [change.path for change in plan.changes] == ["/srv/litellm/proxy/gateway.pem"]
    assert layout.plan(DOCKER, host, replace(renewed, config=renewed.config + "# changed\n"), held).restart == "switch"
    stopped = replace(RUNNING, running=False, status="exited")  # a proxy down is healed by a switch
    assert layout.plan(DOCKER, host, renewed, settled(host, before, certificate_text=before.certificate,
                                                      instances={"blue": RUNNING, "proxy": stopped})).restart == "switch"
