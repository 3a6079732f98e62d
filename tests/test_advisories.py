"""LiteLLM's releases and advisories as data (litellm.yaml): versions from both tag schemes, the tag
`--to` means on a host, and which releases are refused or warned about (pure)."""

from pathlib import Path

import pytest
import yaml
from conftest import REPO
from hypothesis import given
from hypothesis import strategies as st
from packaging.version import Version

from lab.advisory_feed import refresh
from litedeploy import runtimes
from litedeploy.advisories import load_releases, release_version
from litedeploy.errors import DeployError, RenderError

RELEASES = load_releases(REPO / "litellm.yaml")
HOST_ADVISORY = "GHSA-4xpc-pv4p-pm3w"


@pytest.mark.parametrize("tag, version", [
    ("1.110.4", "1.110.4"), ("v1.110.4", "1.110.4"), ("v1.83.14-stable", "1.83.14"),
    ("v1.84.0.post1", "1.84.0.post1"), ("1.84.0-rc1", "1.84.0rc1"), ("v1.84.0rc2", "1.84.0rc2"),
    ("v1.84.0-rc.1", "1.84.0rc1"),
    ("main-stable", None), ("latest", None), ("v1.84", None), ("1.84.0-nightly", None), (None, None)])
def test_both_tag_schemes_name_a_version(tag, version):
    assert release_version(tag) == (Version(version) if version else None)


def test_candidates_come_before_their_release_and_patches_after():
    assert release_version("v1.84.0-rc1") < release_version("v1.84.0") < release_version("v1.84.0.post1")


def test_what_runs_names_its_version_by_image_tag_or_venv():
    assert runtimes.named("docker").release.version("ghcr.io/berriai/litellm:v1.83.14-stable@sha256:" + "a" * 64) == Version("1.83.14")
    assert runtimes.named("docker").release.version("127.0.0.1:15500/litellm-lab:1.106.2") == Version("1.106.2")
    assert runtimes.named("systemd").release.version("/opt/litellm/litellm-1.106.2-0123abcd") == Version("1.106.2")
    assert runtimes.named("docker").release.version("ghcr.io/berriai/litellm:main-stable") is None


@pytest.mark.parametrize("wanted, current, tag", [
    ("1.110.4", "v1.84.0", "v1.110.4"),            # the host's v scheme
    ("1.110.4", "v1.83.10-stable", "v1.110.4"),    # across the scheme change: no -stable from 1.84.0
    ("1.83.14", "v1.83.10-stable", "v1.83.14-stable"),
    ("1.106.3", "1.106.2", "1.106.3"),             # a registry without the v
    ("1.84.0.post1", "v1.84.0", "v1.84.0.post1"),
    ("1.84.0rc1", None, "v1.84.0-rc.1"),           # LiteLLM's Docker candidates
    ("1.83.14-stable", "v1.83.10-stable", "v1.83.14-stable"),
    ("v1.110.4", "1.106.2", "v1.110.4"),           # a tag as written
    ("main-stable", "v1.84.0", "main-stable")])
def test_to_a_version_takes_the_hosts_tag_scheme(wanted, current, tag):
    assert RELEASES.tag_for(wanted, current, "fox: --to") == tag


def test_a_stable_tag_of_a_release_that_has_none_is_an_error_naming_the_right_one():
    with pytest.raises(DeployError, match=r"fox: --to: .*there is no v1.84.0-stable: use --to v1.84.0"):
        RELEASES.tag_for("v1.84.0-stable", "v1.83.10-stable", "fox: --to")


def test_a_critical_advisory_refuses_the_release_until_accepted_by_any_of_its_names():
    old = release_version("v1.83.10-stable")
    refusal = RELEASES.refusal(old, (), "fox: the image")
    assert refusal and HOST_ADVISORY in refusal and f"--accept-risk {HOST_ADVISORY}" in refusal
    assert RELEASES.refusal(old, (HOST_ADVISORY,), "fox") is None
    assert RELEASES.refusal(old, ("CVE-2026-49468",), "fox") is None
    assert RELEASES.refusal(old, ("GHSA-other",), "fox") is not None


def test_the_default_release_and_current_ones_are_not_exposed():
    default = RELEASES.default_image
    assert runtimes.named("docker").release.version(default) is not None, "the default release must name a version"
    assert RELEASES.exposure(runtimes.named("docker").release.version(default)) == []
    assert RELEASES.refusal(None, (), "fox") is None  # a moving tag: nothing known, nothing refused


def test_non_critical_advisories_warn_with_their_source():
    warnings = RELEASES.warnings(release_version("1.83.13"), "fox: the image")
    assert any("GHSA-qrc4-49gv-mv9m" in line and "https://" in line for line in warnings)
    assert RELEASES.refusal(release_version("1.83.13"), (HOST_ADVISORY,), "fox") is None


@given(st.tuples(st.integers(0, 3), st.integers(0, 200), st.integers(0, 30)),
       st.sampled_from(["", ".post1", ".post12", "rc1", "-rc3"]), st.sampled_from(["", "v"]))
def test_any_version_written_in_either_scheme_reads_back_and_orders_as_pep440(parts, suffix, prefix):
    written = ".".join(map(str, parts)) + suffix
    version = release_version(prefix + written)
    assert version == Version(written)
    old_scheme = Version(version.base_version) < RELEASES.bare_tags_since
    if old_scheme:
        assert release_version(f"v{written}-stable") == version
    tag = RELEASES.tag_for(written, "v1.84.0", "fox")
    assert release_version(tag) == version and tag.startswith("v")
    assert tag.endswith("-stable") == (old_scheme and not version.pre)  # candidates never had -stable


@pytest.mark.parametrize("entry, message", [
    ({"id": "X", "severity": "bad", "affected": "< 1.0.0", "summary": "s", "source": "u"}, r"advisories\[0\].severity"),
    ({"id": "X", "severity": "high", "affected": "before 1.0", "summary": "s", "source": "u"},
     r"advisories\[0\].affected: 'before 1.0' is not a bound"),
    ({"id": "X", "severity": "high", "affected": "< 1.0.0", "summary": "s"}, r"advisories\[0\].source"),
    ("just text", r"advisories\[0\] must be a mapping")])
def test_a_malformed_advisory_is_named_by_file_and_index(tmp_path: Path, entry, message):
    facts = tmp_path / "litellm.yaml"
    facts.write_text(yaml.safe_dump({"releases": {"default_image": "x/litellm:v1.84.0", "bare_tags_since": "1.84.0"},
                                     "advisories": [entry]}))
    with pytest.raises(RenderError, match=message):
        load_releases(facts)


GITHUB = [{"ghsa_id": "GHSA-4xpc-pv4p-pm3w", "cve_id": "CVE-2026-49468", "severity": "critical",
           "summary": "Host header reaches management routes", "withdrawn_at": None,
           "html_url": "https://github.com/advisories/GHSA-4xpc-pv4p-pm3w",
           "vulnerabilities": [{"package": {"ecosystem": "pip", "name": "litellm"},
                                "vulnerable_version_range": "< 1.84.0", "first_patched_version": "1.84.0"}]},
          {"ghsa_id": "GHSA-aaaa-bbbb-cccc", "cve_id": None, "severity": "medium", "summary": "a new one",
           "withdrawn_at": None, "html_url": "https://github.com/advisories/GHSA-aaaa-bbbb-cccc",
           "vulnerabilities": [{"package": {"ecosystem": "pip", "name": "litellm"},
                                "vulnerable_version_range": "= 1.109.1", "first_patched_version": None},
                               {"package": {"ecosystem": "pip", "name": "other"},
                                "vulnerable_version_range": "< 9", "first_patched_version": "9"}]},
          {"ghsa_id": "GHSA-gone-gone-gone", "severity": "high", "summary": "withdrawn",
           "withdrawn_at": "2026-10-01T00:00:00Z", "html_url": "u", "vulnerabilities": []},
          {"ghsa_id": "GHSA-qrc4-49gv-mv9m", "severity": "high", "summary": "withdrawn since",
           "withdrawn_at": "2026-11-01T00:00:00Z", "html_url": "u", "vulnerabilities": []},
          {"ghsa_id": "GHSA-dddd-eeee-ffff", "cve_id": None, "severity": "unknown", "summary": "two-part bounds",
           "withdrawn_at": None, "html_url": "https://github.com/advisories/GHSA-dddd-eeee-ffff",
           "vulnerabilities": [{"package": {"name": "litellm"}, "vulnerable_version_range": ">= 1.40, < 1.41",
                                "first_patched_version": "1.41"},
                               {"package": {"name": "litellm"}, "vulnerable_version_range": None}]}]


def test_refreshing_from_githubs_database_adds_new_ones_and_keeps_what_it_lacks(tmp_path: Path):
    facts = tmp_path / "litellm.yaml"
    facts.write_text((REPO / "litellm.yaml").read_text())
    count = refresh(facts, fetch=lambda: GITHUB)
    releases = load_releases(facts)
    ids = [advisory.id for advisory in releases.advisories]
    assert ids[:2] == ["GHSA-4xpc-pv4p-pm3w", "GHSA-aaaa-bbbb-cccc"] and count == len(ids)
    assert "MAL-2026-2144" in ids and "GHSA-gone-gone-gone" not in ids  # kept; withdrawn left out
    assert "GHSA-qrc4-49gv-mv9m" not in ids  # in the file before, withdrawn since: gone
    before = {a.id for a in load_releases(REPO / "litellm.yaml").exposure(release_version("1.40.3"))}
    after = {a.id for a in releases.exposure(release_version("1.40.3"))}  # `>= 1.40, < 1.41` read as X.Y.0
    assert after == (before - {"GHSA-qrc4-49gv-mv9m"}) | {"GHSA-dddd-eeee-ffff"}
    assert not releases.exposure(release_version("1.41.0")) or "GHSA-dddd-eeee-ffff" not in {
        a.id for a in releases.exposure(release_version("1.41.0"))}
    assert [a.id for a in releases.exposure(release_version("1.109.1"))] == ["GHSA-aaaa-bbbb-cccc"]
    assert facts.read_text().startswith((REPO / "litellm.yaml").read_text().partition("\nadvisories:\n")[0])
