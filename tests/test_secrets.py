"""Secret values: masked in every output (streamed too), refused where a value would not reach LiteLLM
as written (quoting, placeholders, YAML-mangled numbers), and the sops binary found."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from litedeploy.errors import SecretsError
from litedeploy.secrets import Redactor, decrypt_secrets, parse_secrets, sops_binary


def test_redactor_masks_every_value_longest_first():
    redact = Redactor.of({"a": "sk-abcdef", "b": "sk-abcdef-longer", "short": "abc"})
    assert redact("key sk-abcdef-longer and sk-abcdef, abc") == "key ******** and ********, abc"


@pytest.mark.parametrize("value, reason", [
    ("it's $5", "a single quote together with"), ("new\nline", "a line break"), ("a${HOME}", "'\\$\\{'"),
    ("two\\\\back", "a doubled or trailing backslash"), ("trailing\\", "a doubled or trailing backslash"),
])
def test_values_no_quoting_carries_are_refused_by_name(value, reason):
    with pytest.raises(SecretsError, match=f"s.enc.yaml: KEY holds {reason}"):
        parse_secrets(json.dumps({"KEY": value}), "s.enc.yaml")


def test_placeholders_are_refused():
    with pytest.raises(SecretsError, match="LITELLM_MASTER_KEY is still the placeholder CHANGE-ME"):
        parse_secrets('{"LITELLM_MASTER_KEY": "CHANGE-ME"}', "secrets.enc.yaml")


def test_aws_style_values_pass():
    assert parse_secrets('{"K": "wJalr/XUtnFEMI+K7MDENG="}', "s")["K"] == "wJalr/XUtnFEMI+K7MDENG="


@pytest.mark.parametrize("value", [123, 1.5, True])
def test_numbers_and_booleans_are_refused_since_yaml_already_changed_them(value):
    with pytest.raises(SecretsError, match=rf"s.enc.yaml: SALT is not text \(YAML read it as {type(value).__name__}\); quote"):
        parse_secrets(json.dumps({"SALT": value}), "s.enc.yaml")


def test_a_salt_key_0123_stays_0123_when_quoted_and_is_refused_unquoted(repo, tmp_path):
    """Through the real sops: YAML reads an unquoted 0123 as a number before sops encrypts it."""
    recipient = next(line.split(": ")[1].strip() for line in (repo / "lab/age-key.lab.txt").read_text().splitlines()
                     if line.startswith("# public key:"))
    for name, text in (("quoted.yaml", 'LITELLM_SALT_KEY: "0123"\n'), ("bare.yaml", "LITELLM_SALT_KEY: 0123\n")):
        (tmp_path / name).write_text(text)
        subprocess.run([sops_binary(), "--encrypt", "--in-place", "--age", recipient, name], cwd=tmp_path,
                       check=True, capture_output=True)
    key = str(repo / "lab/age-key.lab.txt")
    assert decrypt_secrets(str(tmp_path / "quoted.yaml"), key)["LITELLM_SALT_KEY"] == "0123"
    with pytest.raises(SecretsError, match=r"bare.yaml: LITELLM_SALT_KEY is not text \(YAML read it as int\)"):
        decrypt_secrets(str(tmp_path / "bare.yaml"), key)


def test_sops_is_found_beside_the_interpreter_without_path(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert sops_binary() == str(Path(sys.executable).parent / "sops")


def test_streamed_lines_are_masked_even_when_a_value_is_split_across_chunks():
    import io

    from litedeploy.secrets import RedactedLines
    out = io.StringIO()
    stream = RedactedLines(out, Redactor.of({"k": "sk-secret-value"}), keep=lambda line: "GET" in line)
    for chunk in ["GET /a key=sk-sec", "ret-value\nPOST /b\nGET /c", " done"]:
        stream.write(chunk)
    stream.close()
    assert out.getvalue() == "GET /a key=********\nGET /c done\n"


def test_pem_blocks_pass_and_nothing_else_does():
    from litedeploy.secrets import pem_blocks
    block = "-----BEGIN CERTIFICATE-----\nMIIB/+=\n-----END CERTIFICATE-----\n"
    assert pem_blocks(block * 3) and pem_blocks(block + "\n" + block)
    assert pem_blocks("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAA==\n-----END RSA PRIVATE KEY-----")
    for text in ("x\n" + block, block + "!", "-----BEGIN X-----\nAA", "", "a\nb", block + "PATH=/tmp/evil"):
        assert not pem_blocks(text), text
    assert not pem_blocks(block * 20000 + "!")  # read a line at a time: a backtracking pattern never ends here
