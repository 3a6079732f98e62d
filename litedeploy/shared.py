"""Many gateways behind one address (pure): LiteLLM instances share rate limits and router state
through Redis, and instances on one database must agree on Redis and the salt key, with one of
them running the schema migrations.

`vars.redis: {host, port, password: true, cache: false}` fills router_settings (redis_host,
redis_port, `redis_password: os.environ/REDIS_PASSWORD` from the secrets, and the
usage-based-routing-v2 strategy, which is the one that counts rpm/tpm in Redis); `cache: true`
also turns on LiteLLM's response cache in the same Redis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import RenderError
from .host import Host
from .secrets import SecretValues

REDIS_KEYS = {"host", "port", "password", "cache"}
# The strategy that tracks usage across instances in Redis (LAB-NOTES: the default one does not).
SHARED_ROUTING = "usage-based-routing-v2"


def check_redis(variables: Mapping[str, Any], where: str) -> None:
    redis = variables.get("redis")
    if redis is None:
        return
    if not isinstance(redis, dict) or not isinstance(redis.get("host"), str) or not redis["host"]:
        raise RenderError(f"{where}: vars.redis needs a host (and may set port, password: true, cache: true)")
    unknown = sorted(set(redis) - REDIS_KEYS)
    if unknown:
        raise RenderError(f"{where}: vars.redis.{unknown[0]} is not a Redis setting ({', '.join(sorted(REDIS_KEYS))})")
    port = redis.get("port", 6379)
    if type(port) is not int or not 0 < port < 65536:
        raise RenderError(f"{where}: vars.redis.port must be a port number, not {port!r}")
    for flag in ("password", "cache"):
        if not isinstance(redis.get(flag, False), bool):
            raise RenderError(f"{where}: vars.redis.{flag} must be true or false")


def with_redis(router: Mapping[str, Any], litellm: Mapping[str, Any],
               variables: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """router_settings and litellm_settings with the host's Redis in them (the host's own keys win)."""
    redis = variables.get("redis")
    if not redis:
        return dict(router), dict(litellm)
    connection = {"host": redis["host"], "port": redis.get("port", 6379)}
    if redis.get("password"):
        connection["password"] = "os.environ/REDIS_PASSWORD"
    router = {"routing_strategy": SHARED_ROUTING, **{f"redis_{k}": v for k, v in connection.items()}, **router}
    if redis.get("cache"):
        litellm = {"cache": True, "cache_params": {"type": "redis", **connection}, **litellm}
    return router, dict(litellm)


def check_shared_database(hosts: Sequence[tuple[Host, SecretValues]]) -> None:
    """Hosts with one DATABASE_URL are one LiteLLM: they must share Redis (or their limits and
    budgets split) and the salt key (or one cannot read the keys the other stored), and exactly one
    may migrate the schema (the others set `migrations: false`). Checked before anything is sent."""
    by_database: dict[str, list[tuple[Host, SecretValues]]] = {}
    for host, secrets in hosts:
        if host.vars.get("database") and secrets.get("DATABASE_URL"):
            by_database.setdefault(secrets["DATABASE_URL"], []).append((host, secrets))
    for sharing in by_database.values():
        if len(sharing) < 2:
            continue
        names = ", ".join(host.name for host, _ in sharing)
        first, first_secrets = sharing[0]
        for host, secrets in sharing[1:]:
            if not first.vars.get("redis") or host.vars.get("redis") != first.vars.get("redis"):
                raise RenderError(f"hosts.yaml: {names} share a database but not one vars.redis: their rate "
                                  "limits and budgets would be counted apart; give them the same vars.redis")
            if secrets.get("LITELLM_SALT_KEY") != first_secrets.get("LITELLM_SALT_KEY"):
                raise RenderError(f"hosts.yaml: {names} share a database but not LITELLM_SALT_KEY: keys one "
                                  f"stores, {host.name} cannot read; use one salt key for all of them")
        migrating = [host.name for host, _ in sharing if host.vars.get("migrations", True)]
        if len(migrating) != 1:
            raise RenderError(f"hosts.yaml: {names} share a database and {len(migrating)} of them would migrate "
                              f"its schema ({', '.join(migrating) or 'none'}); set vars.migrations: false on all "
                              "but one")
