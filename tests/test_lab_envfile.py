"""The env file litedeploy renders, read by the real compose v1 and v2 (`config` needs no daemon):
generated secrets and vars.env values arrive exactly as written, or the render refuses them naming
the key. Never a changed value, never a variable the host did not set."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from litedeploy import runtimes
from litedeploy.errors import RenderError, SecretsError
from litedeploy.inventory import load_inventory
from litedeploy.render import load_templates, render_host
from litedeploy.secrets import parse_secrets

pytestmark = pytest.mark.lab

SPECIAL = "'\"$\\{}#= \t\n\r\x00\x0b\x0c\x1c\x1d\x1e\x7f\x85\u2028\u2029\ufeff`"
VALUES = st.text(st.one_of(st.sampled_from(SPECIAL), st.characters(exclude_categories=["Cs"])), max_size=24)
NAMES = st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True).map(lambda name: f"PROBE_{name}")
TEMPLATES = load_templates(REPO / "templates", REPO / "models.yaml")
FOX = load_inventory(REPO / "hosts.yaml").host("fox")
BASE_SECRETS = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE1", "AWS_SECRET_ACCESS_KEY": "secret/value+1",
                "LITELLM_MASTER_KEY": "sk-master-123456"}


def read_by_compose(env_file: Path, lab) -> dict[str, dict[str, str]]:
    """What compose v1 and v2 pass to a service whose env_file is ENV_FILE ($$ is how `config`
    writes a literal $)."""
    folder = env_file.parent
    (folder / "compose.yml").write_text(f"services:\n  probe:\n    image: busybox\n    env_file: [{env_file.name}]\n")
    v2 = subprocess.run(["docker", "compose", "config", "--format", "json"], cwd=folder, capture_output=True,
                        text=True, env={**os.environ, "DOCKER_CONFIG": str(lab.compose_v2_config)})
    v1 = subprocess.run(["docker-compose", "config"], cwd=folder, capture_output=True, text=True)
    assert v2.returncode == 0 and v1.returncode == 0, v2.stderr + v1.stderr
    read = {"v2": json.loads(v2.stdout)["services"]["probe"]["environment"],
            "v1": yaml.safe_load(v1.stdout)["services"]["probe"]["environment"]}
    return {flavour: {name: str(value).replace("$$", "$") for name, value in environment.items()}
            for flavour, environment in read.items()}


# Each example runs both composes (about half a second): 40 in the suite, 800 under the search profile.
@settings(max_examples=settings.default.max_examples * 2 // 5)
@given(salt=VALUES, env=st.dictionaries(NAMES, VALUES, min_size=1, max_size=6))
def test_generated_values_reach_both_composes_as_written_or_are_refused_by_name(lab, tmp_path_factory, salt, env):
    try:
        secrets = parse_secrets(json.dumps({**BASE_SECRETS, "LITELLM_SALT_KEY": salt}), "secrets.enc.yaml")
        files = render_host(TEMPLATES, replace(FOX, vars={**FOX.vars, "env": env}), secrets, runtimes.of(replace(FOX, vars={**FOX.vars, "env": env})))
    except SecretsError as error:
        assert str(error).startswith("secrets.enc.yaml: LITELLM_SALT_KEY holds "), error
        return
    except RenderError as error:
        assert str(error).startswith("hosts.yaml (host fox): vars.env.PROBE_"), error
        return
    env_file = tmp_path_factory.mktemp("envfile") / "litellm.env"
    env_file.write_text(files.env, encoding="utf-8")
    expected = {**secrets, "AWS_REGION_NAME": FOX.vars["aws_region"], **env}
    for flavour, environment in read_by_compose(env_file, lab).items():
        assert environment == expected, flavour
