"""Many gateways on one database and one Redis: the settings each gets, and the checks across them."""

from dataclasses import replace

import pytest
import yaml

from litedeploy import runtimes
from litedeploy.envfile import env_pairs
from litedeploy.errors import RenderError
from litedeploy.inventory import load_inventory
from litedeploy.render import load_templates, render_host
from litedeploy.secrets import SecretValues
from litedeploy.shared import check_shared_database, with_redis

SECRETS = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "LITELLM_MASTER_KEY": "sk-x",
           "LITELLM_SALT_KEY": "salt-1", "DATABASE_URL": "postgresql://db/litellm", "REDIS_PASSWORD": "redis-pw"}
REDIS = {"host": "10.0.0.5", "port": 6380, "password": True}


@pytest.fixture
def fox(repo):
    return load_inventory(repo / "hosts.yaml").host("fox")


def gateway(fox, name, **variables):
    return replace(fox, name=name, vars={**fox.vars, "database": True, "redis": REDIS, **variables})


def test_redis_fills_the_router_and_on_request_the_cache_the_hosts_keys_winning():
    router, litellm = with_redis({"num_retries": 0}, {}, {"redis": REDIS})
    assert router == {"routing_strategy": "usage-based-routing-v2", "redis_host": "10.0.0.5", "redis_port": 6380,
                      "redis_password": "os.environ/REDIS_PASSWORD", "num_retries": 0}
    assert litellm == {}
    router, litellm = with_redis({"routing_strategy": "simple-shuffle"}, {"cache": False},
                                 {"redis": {"host": "r", "cache": True}})
    assert router["routing_strategy"] == "simple-shuffle" and router["redis_port"] == 6379
    assert litellm == {"cache": False, "cache_params": {"type": "redis", "host": "r", "port": 6379}}


def test_the_rendered_files_carry_redis_and_the_migration_switch(repo, fox):
    templates = load_templates(repo / "templates", repo / "models.yaml")
    files = render_host(templates, gateway(fox, "fox2", migrations=False), SecretValues(SECRETS, "s"), runtimes.of(gateway(fox, "fox2", migrations=False)))
    config, env = yaml.safe_load(files.config), env_pairs(files.env)
    assert config["router_settings"]["redis_password"] == "os.environ/REDIS_PASSWORD"
    assert (env["REDIS_PASSWORD"], env["DISABLE_SCHEMA_UPDATE"]) == ("redis-pw", "true")
    assert "REDIS_PASSWORD" in files.secret_names
    assert "redis-pw" not in files.config


@pytest.mark.parametrize("redis, message", [
    ({"port": 6379}, "vars.redis needs a host"),
    ({"host": "r", "db": 2}, "vars.redis.db is not a Redis setting"),
    ({"host": "r", "port": "6379"}, "vars.redis.port must be a port number"),
    ({"host": "r", "cache": "yes"}, "vars.redis.cache must be true or false"),
])
def test_a_bad_redis_setting_names_the_key(repo, fox, redis, message):
    templates = load_templates(repo / "templates", repo / "models.yaml")
    with pytest.raises(RenderError, match=message):
        render_host(templates, replace(fox, vars={**fox.vars, "redis": redis}), SecretValues(SECRETS, "s"), runtimes.of(replace(fox, vars={**fox.vars, "redis": redis})))


def test_gateways_on_one_database_with_one_redis_salt_and_migrator_pass(fox):
    check_shared_database([(gateway(fox, "fox1"), SECRETS), (gateway(fox, "fox2", migrations=False), SECRETS),
                           (gateway(fox, "other"), {**SECRETS, "DATABASE_URL": "postgresql://db2/litellm"})])


@pytest.mark.parametrize("second, secrets, message", [
    ({"redis": {"host": "elsewhere"}, "migrations": False}, SECRETS, "fox1, fox2 share a database but not one vars.redis"),
    ({"migrations": False}, {**SECRETS, "LITELLM_SALT_KEY": "salt-2"}, "share a database but not LITELLM_SALT_KEY"),
    ({}, SECRETS, r"2 of them would migrate its schema \(fox1, fox2\); set vars.migrations: false"),
])
def test_gateways_on_one_database_that_disagree_are_refused(fox, second, secrets, message):
    with pytest.raises(RenderError, match=message):
        check_shared_database([(gateway(fox, "fox1"), SECRETS), (gateway(fox, "fox2", **second), secrets)])
