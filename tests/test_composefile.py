"""The compose file as text: our marked block found, replaced and removed (CRLF, BOM, tabs kept), and
the checks before it is written."""

import pytest
import yaml

from litedeploy.composefile import (
    Markers,
    check_compose,
    check_unmanaged_service,
    find_block,
    remove_block,
    replace_block,
)
from litedeploy.errors import ComposeFileError

MARKERS = Markers.from_template("# {mark} ANSIBLE MANAGED BLOCK litellm")
BLOCK = "  litellm:\n    image: new\n"

USER_FILE = """\
# the team's services
services:
  web:
    image: nginx   # keep this comment

volumes:
  data: {}
"""

ANSIBLE_FILE = """\
services:
  web:
    image: nginx
# BEGIN ANSIBLE MANAGED BLOCK litellm
  litellm:
    container_name: litellm
    image: ghcr.io/berriai/litellm:main-stable
    environment:
      - LITELLM_MASTER_KEY=sk-old
# END ANSIBLE MANAGED BLOCK litellm
"""


def test_block_goes_at_the_end_of_services_not_after_other_top_level_keys():
    edited = replace_block(USER_FILE, BLOCK, MARKERS, "f")
    assert edited == USER_FILE.replace(
        "    image: nginx   # keep this comment\n",
        "    image: nginx   # keep this comment\n"
        "# BEGIN ANSIBLE MANAGED BLOCK litellm\n  litellm:\n    image: new\n# END ANSIBLE MANAGED BLOCK litellm\n")
    check_compose(edited, "litellm", "f")


def test_an_ansible_managed_block_is_taken_over_in_place():
    edited = replace_block(ANSIBLE_FILE, BLOCK, MARKERS, "f")
    assert edited == ("services:\n  web:\n    image: nginx\n# BEGIN ANSIBLE MANAGED BLOCK litellm\n"
                      "  litellm:\n    image: new\n# END ANSIBLE MANAGED BLOCK litellm\n")
    assert "sk-old" not in edited


def test_replacing_with_the_same_block_changes_no_byte():
    once = replace_block(USER_FILE, BLOCK, MARKERS, "f")
    assert replace_block(once, BLOCK, MARKERS, "f") == once


def test_everything_around_the_block_is_kept_byte_for_byte():
    before, after = "services:\n  a: {image: x}\n\n\n", "\nnetworks:\n  n: {}  # trailing\n"
    text = before + "# BEGIN ANSIBLE MANAGED BLOCK litellm\n  old: 1\n# END ANSIBLE MANAGED BLOCK litellm\n" + after
    edited = replace_block(text, BLOCK, MARKERS, "f")
    assert edited.startswith(before) and edited.endswith(after)


def test_file_without_trailing_newline_gets_the_block_on_lines_of_its_own():
    edited = replace_block("services:\n  web:\n    image: nginx", BLOCK, MARKERS, "f")
    assert edited == ("services:\n  web:\n    image: nginx\n# BEGIN ANSIBLE MANAGED BLOCK litellm\n"
                      "  litellm:\n    image: new\n# END ANSIBLE MANAGED BLOCK litellm\n")


def test_crlf_file_stays_crlf():
    edited = replace_block(USER_FILE.replace("\n", "\r\n"), BLOCK, MARKERS, "f")
    assert "\r\n# END ANSIBLE MANAGED BLOCK litellm\r\n" in edited
    assert edited.count("\n") == edited.count("\r\n")


def test_missing_or_empty_file_becomes_a_compose_file_with_only_our_service():
    assert replace_block("", BLOCK, MARKERS, "f") == (
        "services:\n# BEGIN ANSIBLE MANAGED BLOCK litellm\n  litellm:\n    image: new\n"
        "# END ANSIBLE MANAGED BLOCK litellm\n")


def test_remove_takes_out_exactly_the_block():
    assert remove_block(replace_block(USER_FILE, BLOCK, MARKERS, "f"), MARKERS, "f") == USER_FILE
    assert remove_block(USER_FILE, MARKERS, "f") == USER_FILE


@pytest.mark.parametrize("text, message", [
    (ANSIBLE_FILE + ANSIBLE_FILE.split("nginx\n")[1], "appears more than once"),
    (ANSIBLE_FILE.replace("# END ANSIBLE MANAGED BLOCK litellm\n", ""), "do not enclose a block"),
    ("# END ANSIBLE MANAGED BLOCK litellm\n# BEGIN ANSIBLE MANAGED BLOCK litellm\n", "do not enclose a block"),
])
def test_broken_markers_are_refused_not_guessed(text, message):
    with pytest.raises(ComposeFileError, match=message):
        replace_block(text, BLOCK, MARKERS, "fox:/etc/compose.yml")


def test_file_without_services_is_refused():
    with pytest.raises(ComposeFileError, match="no top-level 'services:'"):
        replace_block("version: '3'\nvolumes: {}\n", BLOCK, MARKERS, "f")


def test_find_block_reports_marker_lines():
    assert find_block(ANSIBLE_FILE, MARKERS, "f") == (3, 9)


def test_check_compose_names_the_file_on_bad_yaml():
    with pytest.raises(ComposeFileError, match="fox:/etc/compose.yml: line 2 is not valid YAML"):
        check_compose("services:\n  a: b: c\n", "litellm", "fox:/etc/compose.yml")


FOUR_SPACES = """\
services:
    web:
        image: nginx
        ports:
            - "80:80"
"""
RENDERED = "  litellm:\n    image: new\n    command:\n      - --port\n"


def test_a_four_space_file_gets_a_four_space_block():
    edited = replace_block(FOUR_SPACES, RENDERED, MARKERS, "f")
    assert edited == FOUR_SPACES + ("# BEGIN ANSIBLE MANAGED BLOCK litellm\n    litellm:\n        image: new\n"
                                    "        command:\n            - --port\n# END ANSIBLE MANAGED BLOCK litellm\n")
    assert yaml.safe_load(edited)["services"]["litellm"] == {"image": "new", "command": ["--port"]}


def test_a_two_space_block_taken_over_in_a_four_space_file_follows_the_file():
    old = FOUR_SPACES + "# BEGIN ANSIBLE MANAGED BLOCK litellm\n  litellm:\n    image: old\n# END ANSIBLE MANAGED BLOCK litellm\n"
    edited = replace_block(old, RENDERED, MARKERS, "f")
    assert "\n    litellm:\n        image: new\n" in edited
    check_compose(edited, "litellm", "f")


def test_an_empty_flow_services_mapping_becomes_a_block():
    edited = replace_block("services: {}  # none yet\nvolumes: {}\n", BLOCK, MARKERS, "f")
    assert edited.startswith("services:  # none yet\n# BEGIN")
    assert set(yaml.safe_load(edited)) == {"services", "volumes"}
    check_compose(edited, "litellm", "f")


def test_a_flow_style_services_mapping_with_services_is_a_clear_error():
    with pytest.raises(ComposeFileError, match="f: 'services:' is written in flow style"):
        replace_block("services: {web: {image: nginx}}\n", BLOCK, MARKERS, "f")


def test_an_unmarked_service_of_our_name_is_the_admins_and_an_error():
    text = "services:\n  litellm:\n    image: theirs\n"
    with pytest.raises(ComposeFileError, match="f: a service 'litellm' is already defined outside"):
        check_unmanaged_service(text, "litellm", MARKERS, "f")
    check_unmanaged_service(ANSIBLE_FILE, "litellm", MARKERS, "f")  # inside the markers: ours


def test_a_key_given_twice_is_an_error_naming_its_line():
    with pytest.raises(ComposeFileError, match="f: line 4: duplicate key 'web'"):
        check_compose("services:\n  web: {}\n  db: {}\n  web: {}\n", None, "f")


@pytest.mark.parametrize("text, port", [
    ('services:\n  litellm:\n    ports: ["127.0.0.1:4001:4000"]\n', 4001),
    ("services:\n  litellm:\n    ports:\n      - 4002:4000\n", 4002),
    ('services:\n  litellm:\n    network_mode: host\n    command: ["--port", "14001"]\n', 14001),
    ('services:\n  litellm:\n    ports: ["${PORT}:4000"]\n', None),
    ("services: {}\n", None),
    ("services: [\n", None),
])
def test_the_port_a_previous_compose_file_served_is_read_back_for_a_rollback(text, port):
    from litedeploy.composefile import served_port
    assert served_port(text, "litellm") == port


@pytest.mark.parametrize("before", ["", "services:\n", "services: {}\n", "services:  # ours\nvolumes:\n  data: {}\n"])
def test_removing_the_only_service_leaves_a_services_mapping_compose_accepts(before):
    removed = remove_block(replace_block(before, BLOCK, MARKERS, "f"), MARKERS, "f")
    check_compose(removed, None, "f")
    assert removed.startswith("services: {}")
