"""The Docker runtime's plan (pure): which files change, which verb restarts, what a rollback does, and
what is refused before anything changes."""

import re
from dataclasses import replace

import pytest

from litedeploy import runtimes
from litedeploy.composefile import Markers, replace_block
from litedeploy.errors import DeployError
from litedeploy.facts import GatewayState, Holder, HostFacts
from litedeploy.frontdoor import topology
from litedeploy.inventory import load_inventory
from litedeploy.plan import DesiredFiles, rollback_steps
from litedeploy.runtimes.compose import arch_refusal, compose_v1_refusal, plan_remove

DOCKER = runtimes.named("docker")


def plan_of(host, desired, facts):
    """The plan a deploy makes: the host's topology over the runtime's files."""
    return topology(host).plan(DOCKER, host, desired, facts)
DESIRED = DesiredFiles(config="model_list: []\n", env="K=v\n", service="  litellm:\n    image: x\n")


@pytest.fixture
def fox(repo):
    return load_inventory(repo / "hosts.yaml").host("fox")


def running(up: bool = True) -> GatewayState:
    return GatewayState("running" if up else "exited", up, "t0", 0, 0, "healthy", "x", "sha", "etc")


def facts_matching(host, desired=DESIRED, **changes) -> HostFacts:
    compose = replace_block("services:\n  web: {image: nginx}\n", desired.service,
                            Markers.from_template(host.docker.marker), "f")
    return HostFacts.of(**{"service_text": compose, "config_text": desired.config,
                           "env_text": desired.env, "compose_flavour": "v2",
                           "state": running(), **changes})


def test_nothing_differs_so_nothing_is_written_or_restarted(fox):
    plan = plan_of(fox, DESIRED, facts_matching(fox))
    assert plan.changes == () and plan.restart is None and not plan.changed


def test_config_only_change_restarts(fox):
    plan = plan_of(fox, DESIRED, facts_matching(fox, config_text="old: 1\n"))
    assert [c.path for c in plan.changes] == ["/srv/litellm/config.yaml"] and plan.restart == "restart"


def test_env_change_recreates_because_restart_keeps_the_old_environment(fox):
    plan = plan_of(fox, DESIRED, facts_matching(fox, env_text="K=old\n"))
    assert [(c.path, c.mode, c.secret) for c in plan.changes] == [("/srv/litellm/litellm.env", "0600", True)]
    assert plan.restart == "up"


def test_block_change_recreates(fox):
    old = facts_matching(fox, DesiredFiles(DESIRED.config, DESIRED.env, "  litellm:\n    image: old\n"))
    plan = plan_of(fox, DESIRED, old)
    assert [c.path for c in plan.changes] == ["/etc/compose.yml"] and plan.restart == "up"
    assert plan.changes[0].keep_owner


def test_first_deploy_writes_everything_and_ups(fox):
    plan = plan_of(fox, DESIRED, HostFacts.of(compose_flavour="v1"))
    assert {c.name for c in plan.changes} == {"compose.yml", "litellm.env", "config.yaml"}
    assert plan.restart == "up"
    assert plan.changes[0].new.startswith("services:\n# BEGIN ANSIBLE MANAGED BLOCK litellm\n")
    assert all(change.old is None for change in plan.changes)


@pytest.mark.parametrize("compose, message", [
    ("services: [\n", "fox:/etc/compose.yml: line 2 is not valid YAML"),
    ("volumes: {}\n", "fox:/etc/compose.yml: has no top-level 'services:' mapping"),
])
def test_a_broken_compose_file_on_the_host_is_refused_before_any_edit(fox, compose, message):
    from litedeploy.errors import ComposeFileError
    with pytest.raises(ComposeFileError, match=message):
        plan_of(fox, DESIRED, HostFacts.of(service_text=compose, compose_flavour="v2"))


def test_a_stopped_container_is_brought_up_even_when_no_file_changed(fox):
    assert plan_of(fox, DESIRED, facts_matching(fox, state=running(False))).restart == "up"


def test_a_config_change_to_a_crash_looping_container_restarts_it(fox):
    plan = plan_of(fox, DESIRED, facts_matching(fox, config_text="broken: [\n", state=running(False)))
    assert plan.restart == "restart"


def test_a_symlinked_compose_file_is_planned_at_its_target(fox):
    facts = facts_matching(fox, service_text="services:\n  web: {}\n",
                           real_paths={fox.docker.compose_file: "/opt/stack/compose.yml"})
    compose = plan_of(fox, DESIRED, facts).changes[0]
    assert (compose.path, compose.target) == (fox.docker.compose_file, "/opt/stack/compose.yml")


@pytest.mark.parametrize("field, path, message", [
    ("not_files", "compose_file", "is not a regular file (a directory?)"),
    ("not_files", "config_path", "is not a regular file (a directory?)"),
    ("not_text", "compose_file", "is not UTF-8 text"),
])
def test_a_path_that_is_no_file_or_no_text_stops_the_plan(fox, field, path, message):
    where = fox.docker.compose_file if path == "compose_file" else getattr(fox, path)
    with pytest.raises(DeployError, match=re.escape(f"fox:{where}: {message}")):
        plan_of(fox, DESIRED, facts_matching(fox, **{field: (where,)}))


def test_a_taken_over_compose_file_with_plaintext_secrets_asks_for_rotation(fox):
    old = "services:\n  litellm:\n    environment:\n      - LITELLM_MASTER_KEY=sk-old\n      - AWS_REGION_NAME=us\n"
    desired = replace(DESIRED, env="LITELLM_MASTER_KEY=new\nAWS_REGION_NAME=us\n", secret_names=("LITELLM_MASTER_KEY",))
    plan = plan_of(fox, desired, facts_matching(fox, service_text=old.replace("litellm:", "web:")))
    assert len(plan.warnings) == 1
    assert "/etc/compose.yml held LITELLM_MASTER_KEY in plain text" in plan.warnings[0]
    assert "sk-old" not in plan.warnings[0] and "rotate them" in plan.warnings[0]
    assert plan_of(fox, desired, facts_matching(fox)).warnings == ()


def test_a_moving_tag_is_deployed_with_a_warning(fox):
    assert not plan_of(fox, DESIRED, facts_matching(fox)).warnings
    moving = fox.with_settings(image="ghcr.io/berriai/litellm:main-stable")
    (warning,) = plan_of(moving, DESIRED, facts_matching(moving)).warnings
    assert "main-stable is a tag that moves" in warning


def rollback_of(host, plan, before):
    """How a failed deploy puts HOST back, on the port the files it restores serve (as `deploy` asks)."""
    return rollback_steps(plan, before, DOCKER.service.served_port(host, before.files.service_text) or host.port)


def test_a_failed_first_deploy_rolls_back_by_removing_the_new_container(fox):
    before = HostFacts.of(compose_flavour="v2")
    plan = plan_of(fox, DESIRED, before)
    steps = rollback_of(fox, plan, before)
    assert (steps.restore, steps.gateway) == (True, "remove")


def test_a_stopped_container_is_left_stopped_and_a_running_one_restarted_on_its_old_port(fox):
    stopped = facts_matching(fox, state=running(False), config_text="old: 1\n")
    assert rollback_of(fox, plan_of(fox, DESIRED, stopped), stopped).gateway == "stop"
    old_block = "  litellm:\n    image: x\n    ports:\n      - \"0.0.0.0:4123:4000\"\n"
    before = facts_matching(fox, DesiredFiles(DESIRED.config, DESIRED.env, old_block))
    steps = rollback_of(fox, plan_of(fox, DESIRED, before), before)
    assert (steps.restore, steps.gateway, steps.port) == (True, "start", 4123)


def test_removal_takes_out_only_our_block_and_the_container_that_exists(fox):
    removal = plan_remove(fox, facts_matching(fox))
    assert removal.container and removal.changed == [fox.docker.compose_file]
    assert removal.compose.new == "services:\n  web: {image: nginx}\n"
    bare = plan_remove(fox, HostFacts.of(service_text="services:\n  web: {image: nginx}\n", compose_flavour="v2"))
    assert not bare.container and bare.compose is None and bare.changed == []


def test_an_engine_that_does_not_answer_stops_the_deploy_naming_it_not_the_ports_holder(fox):
    facts = HostFacts.of(compose_flavour="v2", port_holder=Holder("process", "python3 (pid 42)"), unreachable=True)
    with pytest.raises(DeployError, match="fox: the Docker engine does not answer root"):
        plan_of(fox, DesiredFiles(config="c", env="e", service="  litellm: {}\n"), facts)


@pytest.mark.parametrize("flavour, engine, container, env, refused", [
    ("v1", "25.0.3", True, "K=new\n", True),     # a recreate under v1 on Engine 25: KeyError 'ContainerConfig'
    ("v1", "28.2.2", True, "K=new\n", True),
    ("v1", "24.0.9", True, "K=new\n", False),
    ("v1", "20.10.24+dfsg1", True, "K=new\n", False),
    ("v2", "28.2.2", True, "K=new\n", False),
    ("v1", "28.2.2", True, "K=v\n", False),     # nothing to recreate
    ("v1", "28.2.2", False, "K=new\n", False),  # a first create works
    ("v1", None, True, "K=new\n", False)])      # the engine's version unknown: nothing to go by
def test_compose_v1_may_not_recreate_on_engine_25_or_newer(fox, flavour, engine, container, env, refused):
    facts = facts_matching(fox, compose_flavour=flavour, engine_version=engine, env_text=env,
                           state=running() if container else None)
    plan = plan_of(fox, DESIRED, facts)  # ops.status and config.diff still see the plan
    refusal = compose_v1_refusal(facts, plan.restart)
    if refused:
        assert refusal and re.search(rf"docker-compose v1 cannot recreate containers on Docker Engine "
                                     rf"{re.escape(engine)} .*install the Compose v2 plugin", refusal)
    else:
        assert refusal is None


def test_an_image_of_another_architecture_is_named_with_the_engines():
    refusal = arch_refusal("x/litellm:1@sha256:ab", "arm64", "amd64")
    assert refusal and "x/litellm:1@sha256:ab is built for arm64" in refusal and "runs on amd64" in refusal
    assert arch_refusal("x", "amd64", "amd64") is None
    assert arch_refusal("x", None, "amd64") is None and arch_refusal("x", "arm64", None) is None


def test_a_plan_that_writes_without_restarting_is_refused():
    """Every runtime restarts for what it writes: a file written but never read would be drift."""
    from litedeploy.plan import FileChange, Plan
    with pytest.raises(ValueError, match="writes /srv/x without restarting"):
        Plan((FileChange("/srv/x", None, "new", "0644"),), None)
    assert not Plan((), None).changed
