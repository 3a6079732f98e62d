"""The master key is checked before anything connects, by the rules litellm.yaml holds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from litedeploy import runtimes
from litedeploy.errors import RenderError
from litedeploy.inventory import load_inventory
from litedeploy.masterkey import check_master_key, load_master_key_rules
from litedeploy.render import load_templates, render_host
from litedeploy.secrets import SecretValues

REPO = Path(__file__).resolve().parent.parent
RULES = load_master_key_rules(REPO / "litellm.yaml")


@pytest.mark.parametrize("key, reason", [
    ("", "is empty"), ("   ", "is empty"), ("sk-1234", "is an example key from LiteLLM's docs"),
    ("lab-master-0123456789", "must start with sk-"), ("sk-ключ-0123456789", "holds characters outside printable ASCII"),
    ("sk-tab\tin-it-0123", "holds characters outside printable ASCII"), (" sk-padded-0123456789", "starts or ends with a space"),
])
def test_a_key_litellm_refuses_or_anyone_knows_is_refused_naming_the_file(key, reason):
    with pytest.raises(RenderError, match=f"^s.enc.yaml: LITELLM_MASTER_KEY {reason}") as raised:
        check_master_key(key, RULES, "s.enc.yaml")
    assert "sops s.enc.yaml" in str(raised.value)
    assert key.strip() == "" or key not in str(raised.value)


def test_a_generated_key_passes():
    check_master_key("sk-" + "0123456789abcdef" * 4, RULES, "s.enc.yaml")


def test_render_refuses_the_weak_key_before_anything_is_sent():
    fox = load_inventory(REPO / "hosts.yaml").host("fox")
    secrets = SecretValues({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE1", "AWS_SECRET_ACCESS_KEY": "secret/value+1",
                            "LITELLM_MASTER_KEY": "sk-1234", "LITELLM_SALT_KEY": "salt-123456"}, "secrets.enc.yaml")
    with pytest.raises(RenderError, match="^secrets.enc.yaml: LITELLM_MASTER_KEY is an example key"):
        render_host(load_templates(REPO / "templates", REPO / "models.yaml"), replace(fox), secrets, runtimes.of(replace(fox)))


def test_facts_without_the_section_are_named(tmp_path):
    (tmp_path / "litellm.yaml").write_text("releases: []\n")
    with pytest.raises(RenderError, match="litellm.yaml: master_key needs a prefix and a publicly_known list"):
        load_master_key_rules(tmp_path / "litellm.yaml")
