"""What each client needs to reach a gateway, as the lines to paste (pure): Claude Code speaks
Anthropic's Messages API (LiteLLM serves it at /v1/messages), Cline has a LiteLLM provider, and
every OpenAI SDK reads OPENAI_BASE_URL and OPENAI_API_KEY."""

from __future__ import annotations

import shlex
from collections.abc import Mapping

CLIENTS = ("claude-code", "cline", "openai")


FAMILIES = ("opus", "sonnet", "haiku")


def client_lines(client: str, base_url: str, key: str, models: list[str],
                 families: Mapping[str, str] | None = None, ca_file: str | None = None) -> list[str]:
    """`key` is the master key or its mask; models are the gateway's model names, the first the
    default; families the model of each Claude family (catalog.families_of), else told by name.
    Claude Code 2.x picks its default, `--model opus|sonnet|haiku` and its background model through
    ANTHROPIC_DEFAULT_{OPUS,SONNET,HAIKU}_MODEL (code.claude.com/docs, model-config; 2.1.332 asks
    for claude-*-5-5 otherwise); 1.x reads ANTHROPIC_SMALL_FAST_MODEL. CA_FILE: the team's own CA
    the gateway's certificate is from, which Node adds to its CAs from NODE_EXTRA_CA_CERTS
    (nodejs.org/api/cli.html) and httpx, under the OpenAI SDK, uses instead of certifi's from
    SSL_CERT_FILE (python-httpx.org/environment_variables)."""
    default = models[0]
    node_trust = [f"export NODE_EXTRA_CA_CERTS={shlex.quote(ca_file)}"] if ca_file else []
    if client == "claude-code":
        by_family = {family: (families or {}).get(family) or next((name for name in models if family in name), None)
                     for family in FAMILIES}
        missing = [family for family, name in by_family.items() if name is None]
        return ["# Claude Code: unset ANTHROPIC_API_KEY first, or it is sent instead",
                *node_trust,
                f"export ANTHROPIC_BASE_URL={shlex.quote(base_url)}",
                f"export ANTHROPIC_AUTH_TOKEN={shlex.quote(key)}",
                f"export ANTHROPIC_MODEL={shlex.quote(default)}",
                *(f"export ANTHROPIC_DEFAULT_{family.upper()}_MODEL={shlex.quote(name)}"
                  for family, name in by_family.items() if name),
                f"export ANTHROPIC_SMALL_FAST_MODEL={shlex.quote(by_family['haiku'] or default)}  # Claude Code 1.x",
                *([f"# no {' or '.join(missing)} model here: --model {missing[0]} gets an error"] if missing else []),
                f"# /model takes any of: {', '.join(models)}"]
    if client == "cline":
        return ["# Cline: Settings > API Provider: LiteLLM",
                *([f"# start VS Code with NODE_EXTRA_CA_CERTS={shlex.quote(ca_file)} (the team's CA)"] if ca_file else []),
                f"Base URL:  {base_url}", f"API Key:   {key}", f"Model ID:  {default}",
                f"# other model IDs: {', '.join(models[1:]) or 'none'}"]
    return ["# an OpenAI SDK or any OpenAI-compatible client",
            *([f"export SSL_CERT_FILE={shlex.quote(ca_file)}  # the team's CA, instead of certifi's"] if ca_file else []),
            f"export OPENAI_BASE_URL={shlex.quote(base_url + '/v1')}",
            f"export OPENAI_API_KEY={shlex.quote(key)}",
            f"# model names: {', '.join(models)}"]
