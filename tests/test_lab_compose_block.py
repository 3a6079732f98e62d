"""hosts.yaml values that reach the compose service block (folder, names, port, bind, image),
generated: each is refused naming its key, or the real compose v2 and v1 read the block with every
value exactly as hosts.yaml wrote it (no interpolation, no volume syntax split, no YAML retyping)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import DEFAULT_IMAGE
from hypothesis import given, settings
from hypothesis import strategies as st

from litedeploy.errors import InventoryError
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
             **{key: value for key, value in chosen.items() if key != "folder"}}
    if "folder" in chosen:
        entry["config_dir"] = f"{root}/{chosen['folder']}"
    try:
        host = parse_inventory(yaml.safe_dump({"hosts": {"fox": entry}}), Path("hosts.yaml"), DEFAULT_IMAGE).host("fox")
    except InventoryError as error:
        assert str(error).startswith("hosts.yaml: host 'fox': '") and "\n" not in str(error)
        return
    block = render_host(TEMPLATES, host, SECRETS).service
    Path(host.env_path).parent.mkdir(parents=True, exist_ok=True)
    Path(host.env_path).write_text("LITEDEPLOY_PROBE=read\n")  # config inlines the env file it found
    (root / "compose.yml").write_text("services:\n" + block)
    for flavour, argv, env in (("v2", ["docker", "compose"], {"DOCKER_CONFIG": str(lab.compose_v2_config)}),
                               ("v1", ["docker-compose"], {})):
        service = read_by(argv, root, env)["services"][host.service_name]
        volume = service["volumes"][0]
        source = volume["source"] if isinstance(volume, dict) else volume.rsplit(":", 2)[0]
        assert (service["container_name"], service["image"], source) == \
            (host.container_name, host.image, host.config_path), flavour
        assert service["environment"]["LITEDEPLOY_PROBE"] == "read", flavour
        published = service["ports"][0]
        port = published["published"] if isinstance(published, dict) else published.rsplit(":", 2)[-2]
        assert int(port) == host.port, flavour
