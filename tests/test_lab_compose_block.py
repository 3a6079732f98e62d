"""hosts.yaml values that reach the compose service block (folder, names, port, bind, image),
generated: each is refused naming its key, or the real compose v2 and v1 read the block with every
value exactly as hosts.yaml wrote it (no interpolation, no volume syntax split, no YAML retyping);
with zero_downtime, HAProxy accepts the proxy's configuration made from them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import DEFAULT_IMAGE
from hypothesis import given, settings
from hypothesis import strategies as st

from litedeploy import runtimes
from litedeploy.errors import InventoryError, RenderError
from litedeploy.frontdoor import topology
from litedeploy.host import COLORS
from litedeploy.inventory import parse_inventory
from litedeploy.render import load_templates, render_host
from litedeploy.secrets import SecretValues

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = load_templates(REPO / "templates", REPO / "models.yaml")
SECRETS = SecretValues({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE1", "AWS_SECRET_ACCESS_KEY": "secret/value+1",
                        "LITELLM_MASTER_KEY": "sk-master-123456", "LITELLM_SALT_KEY": "salt-123456"}, "s.enc.yaml")
TRICKY = st.text(st.sampled_from("ab0-_.:$%{} '\"#/\\~*&!@"), min_size=1, max_size=10)
SETTINGS = st.fixed_dictionaries({}, optional={
    "folder": TRICKY, "container_name": TRICKY, "service_name": TRICKY | st.sampled_from(["123", "true", "1e3"]),
    "port": st.integers(1, 65535), "bind": st.sampled_from(["0.0.0.0", "127.0.0.1", "::1", "10.1.2.3"]),
    "image": st.sampled_from(["registry.example:5000/litellm:v1", "ghcr.io/berriai/litellm@sha256:" + "a" * 64]),
    # vars.zero_downtime: the proxy and both instances in the block, and the proxy's own configuration.
    "zero_downtime": st.booleans(),
    # The names the door answers for, into HAProxy's configuration (refused without the door).
    "server_names": st.lists(TRICKY | st.sampled_from(["llm.example.com", "LLM.Example.com", "10.0.0.5"]), max_size=3),
})


def read_by(argv: list[str], folder: Path, env: dict) -> dict:
    done = subprocess.run([*argv, "-f", "compose.yml", "config"], cwd=folder, capture_output=True, text=True,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout.replace("$$", "$"))


# Each example runs both composes: 30 in the suite, 600 under the search profile.
@settings(max_examples=settings.default.max_examples * 3 // 10)
@given(SETTINGS)
def test_block_values_reach_compose_as_written_or_are_refused_by_key(lab, tmp_path_factory, chosen):
    root = tmp_path_factory.mktemp("block")
    entry = {"address": "fox.example", "network_mode": "bridge",
             "vars": {"aws_region": "us-east-1", "models": [{"name": "claude-sonnet-4"}]},
             **{key: value for key, value in chosen.items() if key not in ("folder", "server_names")}}
    if "server_names" in chosen:
        entry["vars"]["server_names"] = chosen["server_names"]
    if "folder" in chosen:
        entry["config_dir"] = f"{root}/{chosen['folder']}"
    if chosen.get("zero_downtime"):
        entry["vars"] = {**entry["vars"], "zero_downtime": True, "proxy_image": "127.0.0.1:15500/haproxy-lab:2.6"}
    try:
        host = parse_inventory(yaml.safe_dump({"hosts": {"fox": entry}}), Path("hosts.yaml"), DEFAULT_IMAGE).host("fox")
        files = render_host(TEMPLATES, host, SECRETS, runtimes.of(host))
    except (InventoryError, RenderError) as error:
        assert str(error).startswith("hosts.yaml") and "\n" not in str(error)
        return
    block = files.service
    Path(host.env_path).parent.mkdir(parents=True, exist_ok=True)
    Path(host.env_path).write_text("LITEDEPLOY_PROBE=read\n")  # config inlines the env file it found
    (root / "compose.yml").write_text("services:\n" + block)
    for flavour, argv, env in (("v2", ["docker", "compose"], {"DOCKER_CONFIG": str(lab.compose_v2_config)}),
                               ("v1", ["docker-compose"], {})):
        service = read_by(argv, root, env)["services"][host.service_name]
        volume = service["volumes"][0]
        source = volume["source"] if isinstance(volume, dict) else volume.rsplit(":", 2)[0]
        assert (service["container_name"], service["image"], source) == \
            (host.docker.container_name, host.docker.image, host.config_path), flavour
        assert service["environment"]["LITEDEPLOY_PROBE"] == "read", flavour
        published = service["ports"][0]
        port = published["published"] if isinstance(published, dict) else published.rsplit(":", 2)[-2]
        assert int(port) == host.port, flavour
    if files.proxy:
        check_proxy(lab, host, files, root)


def check_proxy(lab, host, files, root: Path) -> None:
    """Both composes read the proxy and the two instances as written; HAProxy accepts its configuration
    for either instance live (`haproxy -c`, in the lab's proxy image)."""
    for flavour, argv, env in (("v2", ["docker", "compose"], {"DOCKER_CONFIG": str(lab.compose_v2_config)}),
                               ("v1", ["docker-compose"], {})):
        services = read_by(argv, root, env)["services"]
        docker = runtimes.of(host)
        proxy = services[docker.door.proxy(host).service_name]
        assert (proxy["container_name"], proxy["network_mode"]) == (docker.door.proxy(host).docker.container_name,
                                                                    "host"), \
            flavour
        for color in COLORS:
            serving = topology(host).instance(docker, host, color)
            assert services[serving.service_name]["container_name"] == serving.docker.container_name, flavour
    for text in files.proxy.values():
        (root / "proxy").mkdir(exist_ok=True)
        (root / "proxy/haproxy.cfg").write_text(text)
        checked = subprocess.run(["docker", "run", "--rm", "-v", f"{root / 'proxy'}:/usr/local/etc/haproxy:ro",
                                  "127.0.0.1:15500/haproxy-lab:2.6", "haproxy", "-c", "-f",
                                  "/usr/local/etc/haproxy/haproxy.cfg"], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
