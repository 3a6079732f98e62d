"""Compose files as admins and the old role left them (CRLF and LF, mixed; a byte-order mark; tabs
after `services:`; two or four spaces; other top-level keys; the role's block with plaintext
secrets, appended at the end wherever that was), generated: each edit keeps every byte outside the
block, takes the role's block over in place, and the real compose v2 (and v1, where it reads the
file at all) accepts the result with exactly the admin's services and ours."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from litedeploy.composefile import Markers, remove_block, replace_block

pytestmark = pytest.mark.lab

MARKERS = Markers.from_template("# {mark} ANSIBLE MANAGED BLOCK litellm")
BLOCK = ('  litellm:\n    container_name: "litellm"\n    image: "ghcr.io/berriai/litellm:v1.83.14"\n'
         '    ports:\n      - "4000:4000"\n    command: ["--config", "/app/config.yaml", "--port", "4000"]\n')
# What the seed's role appended with blockinfile (LF endings, plaintext secrets).
ROLE_BLOCK = ["# BEGIN ANSIBLE MANAGED BLOCK litellm", "  litellm:", "    image: ghcr.io/berriai/litellm:main-stable",
              "    environment:", "      - LITELLM_MASTER_KEY=sk-old-plaintext", "# END ANSIBLE MANAGED BLOCK litellm"]
NAMES = st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True).filter(lambda name: name != "litellm")


@st.composite
def compose_files(draw) -> tuple[str, str, list[str], bool]:
    """(the file, the file we leave when our block goes, the admin's services, has a tab). Without
    the role's block that is the file itself; without it, and without services, `services: {}`."""
    indent = " " * draw(st.sampled_from([2, 4]))
    services = draw(st.lists(NAMES, unique=True, max_size=3))
    opener = draw(st.sampled_from(["services:", "services:\t", "services:  # the team's", "services:\t# tabbed"]))
    role = draw(st.booleans())
    # Without services of the admin's, `services: {}`, or `services:` with the role's block under it.
    lines = [*(["# the team's stack"] if draw(st.booleans()) else []),
             opener if services else "services:" if role else "services: {}"]
    for name in services:
        lines += [f"{indent}{name}:", f"{indent * 2}image: nginx:alpine"]
        if draw(st.booleans()):
            lines.append("")
    for key in draw(st.lists(st.sampled_from(["volumes", "networks", "x-common"]), unique=True, max_size=2)):
        lines += [f"{key}:", f"{indent}data: {{}}" if key != "x-common" else f"{indent}restart: always"]
    crlf = draw(st.sampled_from(["none", "all", "some"]))
    endings = [("\r\n" if crlf == "all" or crlf == "some" and draw(st.booleans()) else "\n") for _ in lines]
    bom = "\ufeff" if draw(st.booleans()) else ""
    admins = bom + "".join(line + ending for line, ending in zip(lines, endings))
    if not role:
        return admins, admins, services, "\t" in admins
    left = admins if services else admins.replace("services:", "services: {}", 1)
    return admins + "".join(line + "\n" for line in ROLE_BLOCK), left, services, "\t" in admins


def compose_config(folder, argv: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([*argv, "-f", "compose.yml", "config"], cwd=folder, capture_output=True, text=True,
                          env={**os.environ, **env})


# Each example runs both composes: 30 in the suite, 600 under the search profile.
@settings(max_examples=settings.default.max_examples * 3 // 10)
@given(compose_files())
def test_an_edited_compose_file_keeps_every_byte_outside_the_block_and_compose_accepts_it(lab, tmp_path_factory,
                                                                                          generated):
    text, left, services, tabbed = generated
    edited = replace_block(text, BLOCK, MARKERS, "compose.yml")
    assert "sk-old-plaintext" not in edited and edited.count(MARKERS.begin) == 1
    assert remove_block(edited, MARKERS, "compose.yml") == left
    folder = tmp_path_factory.mktemp("compose")
    (folder / "compose.yml").write_bytes(edited.encode())
    v2 = compose_config(folder, ["docker", "compose"], {"DOCKER_CONFIG": str(lab.compose_v2_config)})
    assert v2.returncode == 0, v2.stderr
    assert set(yaml.safe_load(v2.stdout)["services"]) == {*services, "litellm"}
    v1 = compose_config(folder, ["docker-compose"], {})
    if tabbed:  # PyYAML, and so compose v1, refuses a tab there; v2 takes it (the host's compose decides)
        assert v1.returncode != 0
    else:
        assert v1.returncode == 0, v1.stderr
        assert set(yaml.safe_load(v1.stdout)["services"]) == {*services, "litellm"}
    assert yaml.safe_load(v2.stdout)["services"]["litellm"]["command"] == ["--config", "/app/config.yaml", "--port",
                                                                            "4000"]
