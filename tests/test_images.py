"""Image references and the digest a host runs: pinned once, kept until an upgrade."""

import pytest

from litedeploy.images import ImageRef, resolve_image

REPO_NAME = "127.0.0.1:15500/litellm-lab"
OLD, NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64


@pytest.mark.parametrize("ref, name, tag, digest", [
    ("ghcr.io/berriai/litellm:v1.110.2", "ghcr.io/berriai/litellm", "v1.110.2", None),
    (f"{REPO_NAME}:1.106.2@{OLD}", REPO_NAME, "1.106.2", OLD),
    (REPO_NAME, REPO_NAME, None, None),  # the colon belongs to the registry's port
    (f"nginx@{OLD}", "nginx", None, OLD),
])
def test_a_reference_splits_into_name_tag_and_digest_and_back(ref, name, tag, digest):
    parsed = ImageRef.parse(ref)
    assert (parsed.name, parsed.tag, parsed.digest) == (name, tag, digest)
    assert str(parsed) == ref


def test_to_names_a_tag_of_the_same_image_or_another_image():
    ref = ImageRef.parse(f"{REPO_NAME}:1.106.2@{OLD}")
    assert str(ref.with_version("1.106.3")) == f"{REPO_NAME}:1.106.3"
    assert str(ref.with_version("ghcr.io/berriai/litellm:v1.110.2")) == "ghcr.io/berriai/litellm:v1.110.2"


@pytest.mark.parametrize("ref, moving", [("ghcr.io/berriai/litellm:main-stable", True), ("x/litellm", True),
                                         ("x/litellm:latest", True), ("x/litellm:v1.83.10-stable", False),
                                         (f"x/litellm:main-stable@{OLD}", False)])
def test_tags_that_move_every_week_are_known(ref, moving):
    assert ImageRef.parse(ref).moving is moving


def test_a_digest_in_hosts_yaml_is_used_as_it_is():
    assert resolve_image(f"{REPO_NAME}@{OLD}", None, None) == f"{REPO_NAME}@{OLD}"


def test_the_digest_deployed_for_the_same_tag_stays_whatever_the_host_holds_now():
    deployed = f"{REPO_NAME}:1.106.2@{OLD}"
    assert resolve_image(f"{REPO_NAME}:1.106.2", deployed, (f"{REPO_NAME}@{NEW}",)) == deployed
    assert resolve_image(f"{REPO_NAME}:1.106.2", deployed, None) == deployed


def test_a_new_tag_is_pinned_to_the_digest_the_host_holds_or_must_be_pulled():
    deployed = f"{REPO_NAME}:1.106.2@{OLD}"
    assert resolve_image(f"{REPO_NAME}:1.106.3", deployed, (f"other/image@{OLD}", f"{REPO_NAME}@{NEW}")) \
        == f"{REPO_NAME}:1.106.3@{NEW}"
    assert resolve_image(f"{REPO_NAME}:1.106.3", deployed, None) is None


def test_docker_hub_digests_are_matched_by_their_short_name():
    assert resolve_image("docker.io/library/nginx:1.27", None, (f"nginx@{OLD}",)) == f"docker.io/library/nginx:1.27@{OLD}"


def test_a_local_build_without_registry_digest_runs_by_its_tag():
    assert resolve_image("localhost/litellm-lab:1.106.2", None, ()) == "localhost/litellm-lab:1.106.2"


def test_an_upgrade_pulls_even_when_a_digest_is_deployed_or_held():
    deployed = f"{REPO_NAME}:1.106.2@{OLD}"
    assert resolve_image(f"{REPO_NAME}:1.106.2", deployed, (f"{REPO_NAME}@{OLD}",), fresh=True) is None
