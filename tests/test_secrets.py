import json

import pytest

from litedeploy.errors import SecretsError
from litedeploy.secrets import Redactor, parse_secrets


def test_redactor_masks_every_value_longest_first():
    redact = Redactor.of({"a": "sk-abcdef", "b": "sk-abcdef-longer", "short": "abc"})
    assert redact("key sk-abcdef-longer and sk-abcdef, abc") == "key ******** and ********, abc"


@pytest.mark.parametrize("value", ["has space", "quote'd", "dollar$", "new\nline", "hash#"])
def test_values_an_env_file_cannot_carry_are_refused_by_name(value):
    with pytest.raises(SecretsError, match="s.enc.yaml: KEY holds a character"):
        parse_secrets(json.dumps({"KEY": value}), "s.enc.yaml")


def test_placeholders_are_refused():
    with pytest.raises(SecretsError, match="LITELLM_MASTER_KEY is still the placeholder CHANGE-ME"):
        parse_secrets('{"LITELLM_MASTER_KEY": "CHANGE-ME"}', "secrets.enc.yaml")


def test_aws_style_values_pass():
    assert parse_secrets('{"K": "wJalr/XUtnFEMI+K7MDENG=", "N": 12}', "s")["N"] == "12"


def test_streamed_lines_are_masked_even_when_a_value_is_split_across_chunks():
    import io
    from litedeploy.secrets import RedactedLines
    out = io.StringIO()
    stream = RedactedLines(out, Redactor.of({"k": "sk-secret-value"}), keep=lambda line: "GET" in line)
    for chunk in ["GET /a key=sk-sec", "ret-value\nPOST /b\nGET /c", " done"]:
        stream.write(chunk)
    stream.close()
    assert out.getvalue() == "GET /a key=********\nGET /c done\n"
