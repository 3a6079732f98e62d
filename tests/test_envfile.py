"""The env file's one writer: every value a template prints is written by it or refused by name."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from litedeploy.envfile import Slots, env_pairs, fill, masked_env, quote, refusal

# Values biased towards what env files and their readers treat specially.
SPECIAL = "'\"$\\{}#= \t\n\r\x00\x0b\x0c\x1c\x1d\x1e\x7f\x85\u2028\u2029\ufeff`"
VALUES = st.text(st.one_of(st.sampled_from(SPECIAL), st.characters()), max_size=24)


def filled(template: str, *values: str, origin=lambda name: f"origin of {name}") -> str:
    slots = Slots()
    rendered = template.format(*(slots.mark(value) for value in values))
    return fill(rendered, slots, origin, "templates/t.env.j2")


@given(VALUES)
def test_a_value_is_written_so_it_reads_back_or_refused_with_a_reason(value):
    reason = refusal(value)
    if reason:
        with pytest.raises(ValueError, match=re.escape(reason)):
            quote(value)
    else:
        assert env_pairs(f"# c\nNAME={quote(value)}\n") == {"NAME": value}


@given(st.lists(VALUES, min_size=1, max_size=6))
def test_no_value_adds_or_changes_another_variable(values):
    """A value with a newline, '=' or a quote stays inside its own line."""
    template = "# header\n" + "".join(f"V{i}={{}}\n" for i in range(len(values)))
    try:
        text = filled(template, *values)
    except ValueError as error:
        assert "origin of V" in str(error) and " holds " in str(error)
        assert any(refusal(value) for value in values)
        return
    assert env_pairs(text) == {f"V{i}": value for i, value in enumerate(values)}
    assert text.count("\n") == len(values) + 1


@pytest.mark.parametrize("value, written", [
    ("plain-value_1", "plain-value_1"), ("p$ss#w rd\"x", "'p$ss#w rd\"x'"), ("back\\slash", "'back\\slash'"),
    ("$HOME", "'$HOME'"), ("it's", "\"it's\""), ("", ""),
])
def test_bare_single_or_double_quotes(value, written):
    assert quote(value) == written


@pytest.mark.parametrize("value, reason", [
    ("pw\u2028$tail", "a line break"), ("a\u0085b", "a line break"), ("two\nlines", "a line break"),
    ("tab\there", "a control character"), ("it's $5", "a single quote together with"),
    ("a${HOME}", "'\\$\\{'"), ("x\\\\y", "a doubled or trailing backslash"),
])
def test_what_no_quoting_carries_is_refused_naming_where_it_came_from(value, reason):
    with pytest.raises(ValueError, match=f"^origin of LITELLM_X holds {reason}"):
        filled("LITELLM_X={}\n", value)


def test_a_comment_takes_its_values_but_never_a_line_break():
    assert filled("# host {}\nA=1\n", "fox") == "# host fox\nA=1\n"
    with pytest.raises(ValueError, match=r"templates/t.env.j2:1: a comment"):
        filled("# host {}\nA=1\n", "fox\nB=2")


def test_a_line_that_is_no_assignment_names_the_template_line():
    with pytest.raises(ValueError, match=r"templates/t.env.j2:2: the line is neither NAME=value"):
        filled("A=1\n{}=2\n", "not a name")


def test_masked_env_marks_the_values_that_differ():
    old, new = "# c\nA='x y'\nB=1\n", "# c\nA='x y'\nB=2\n"
    assert masked_env(new, old, "new") == "# c\nA=********\nB=********  (new value)\n"
