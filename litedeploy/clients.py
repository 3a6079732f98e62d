"""What each client needs to reach a gateway, as the lines to paste (pure): Claude Code speaks
Anthropic's Messages API (LiteLLM serves it at /v1/messages), Cline has a LiteLLM provider, and
every OpenAI SDK reads OPENAI_BASE_URL and OPENAI_API_KEY."""

from __future__ import annotations

import shlex

CLIENTS = ("claude-code", "cline", "openai")


def client_lines(client: str, base_url: str, key: str, models: list[str]) -> list[str]:
    """`key` is the master key or its mask; models are the gateway's model names, the first the
    default (Claude Code's small fast model: the first haiku, if any)."""
    default = models[0]
    fast = next((name for name in models if "haiku" in name), default)
    if client == "claude-code":
        return ["# Claude Code: unset ANTHROPIC_API_KEY first, or it is sent instead",
                f"export ANTHROPIC_BASE_URL={shlex.quote(base_url)}",
                f"export ANTHROPIC_AUTH_TOKEN={shlex.quote(key)}",
                f"export ANTHROPIC_MODEL={shlex.quote(default)}",
                f"export ANTHROPIC_SMALL_FAST_MODEL={shlex.quote(fast)}",
                f"# /model takes any of: {', '.join(models)}"]
    if client == "cline":
        return ["# Cline: Settings > API Provider: LiteLLM",
                f"Base URL:  {base_url}", f"API Key:   {key}", f"Model ID:  {default}",
                f"# other model IDs: {', '.join(models[1:]) or 'none'}"]
    return ["# an OpenAI SDK or any OpenAI-compatible client",
            f"export OPENAI_BASE_URL={shlex.quote(base_url + '/v1')}",
            f"export OPENAI_API_KEY={shlex.quote(key)}",
            f"# model names: {', '.join(models)}"]
