"""Shared fixtures: the repo's project files, and for lab tests the real local target.

Lab tests deploy to hosts of their own (own compose file, config dir, container and loopback port)
through the real sshd and dockerd of the lab, so they never touch the user's `lab` deployment.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, settings

from lab import target as local_lab
from lab.team_ca import encrypt_for_lab  # noqa: F401 (the tests' own name for it)
from litedeploy.advisories import load_releases
from litedeploy.inventory import LOCAL_PATHS, load_inventory

REPO = Path(__file__).resolve().parent.parent
# What a docker host runs unless its inventory names an image, as `inv` loads it (litellm.yaml).
DEFAULT_IMAGE = load_releases(REPO / "litellm.yaml").default_image

# Generated inputs: the suite runs the same examples every time (a run's outcome never depends on
# the day's seed); with HYPOTHESIS_PROFILE=search each property tries 2,000 more, seeded anew.
settings.register_profile("suite", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("search", max_examples=2000, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


@pytest.fixture
def repo() -> Path:
    return REPO


# Namespace hosts the suite brings up: the fleet tests need three separate hosts.
NAMESPACE_HOSTS = 3
LAB_STATE = REPO / ".lab"
# Written by the run's lab.up when it is done: {"error": null} or {"error": "what failed"}.
LAB_READY = LAB_STATE / "up-result.json"
LAB_UP = pytest.StashKey[Future]()
# Seconds of work of each lab group in a full run, lab.up's wait left out (`--lab-durations` writes it).
LAB_DURATIONS = REPO / "tests/lab-durations.json"
GROUP_SECONDS: dict[str, float] = {}
# How long this worker's first lab test waited for lab.up, until its setup's report says so.
LAB_WAITED: list[float] = []
# A cold machine: apt, two debootstraps, the wheels, loading the image into three engines.
LAB_UP_TIMEOUT = 1800
# The lab's sshd profile that offers each compose flavour: v2 as on current hosts, v1 alone as on
# older ones.
FLAVOUR_PROFILES = {"v2": "standard", "v1": "compose-v1"}


def pytest_generate_tests(metafunc):
    """Every test on a lab host runs under compose v2 and v1, unless its module lists fewer in
    COMPOSE_FLAVOURS or the test in its compose_flavours mark (where compose plays no part)."""
    if "compose_flavour" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("compose_flavours")
        flavours = only.args if only else getattr(metafunc.module, "COMPOSE_FLAVOURS", tuple(FLAVOUR_PROFILES))
        metafunc.parametrize("compose_flavour", flavours, scope="module")


def _lab_target() -> local_lab.Lab:
    return local_lab.Lab(LAB_STATE, load_inventory(REPO / "hosts.yaml").host("lab"))


def _runs_lab_tests(config: pytest.Config) -> bool:
    """Whether this run may select a lab test: not when `-m` excludes them, nor when every path
    given names a module that is not a lab module, nor when it only collects."""
    if "not lab" in (config.option.markexpr or "") or config.option.collectonly:
        return False
    paths = [arg.split("::")[0] for arg in config.args]
    return any(Path(path).is_dir() or Path(path).name.startswith("test_lab") for path in paths)


def _bring_up_lab() -> set[str]:
    """`lab.up` for this run, its output in .lab/up.log; the outcome in LAB_READY for the workers."""
    try:
        with open(LAB_STATE / "up.log", "a") as log:
            def say(line: str) -> None:
                print(f"{time.strftime('%H:%M:%S')} {line}", file=log, flush=True)
            started = local_lab.up(_lab_target(), say, hosts=NAMESPACE_HOSTS)
        LAB_READY.write_text(json.dumps({"error": None}))
        return started
    except Exception as error:  # any failure reaches every lab test, named, instead of a hang
        LAB_READY.write_text(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        raise


def pytest_sessionstart(session: pytest.Session) -> None:
    """The lab comes up once per run, in the process that runs the session (xdist's controller),
    beside the tests: unit tests run while its images build; lab tests wait for it in `lab`."""
    if hasattr(session.config, "workerinput"):
        return
    if not _runs_lab_tests(session.config):
        return  # LAB_READY stays another run's, should one be using this checkout's lab
    LAB_STATE.mkdir(mode=0o700, exist_ok=True)
    LAB_READY.unlink(missing_ok=True)
    bringing_up = ThreadPoolExecutor(max_workers=1)
    session.config.stash[LAB_UP] = bringing_up.submit(_bring_up_lab)
    bringing_up.shutdown(wait=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stops what this run's lab.up started, once every worker is done with it; with --lab-durations
    (and every test passed), writes what each lab group took."""
    if session.config.getoption("lab_durations") and exitstatus == 0 and not hasattr(session.config, "workerinput"):
        LAB_DURATIONS.write_text(json.dumps({group: round(seconds) for group, seconds in sorted(GROUP_SECONDS.items())},
                                            indent=1) + "\n")
    bringing_up = session.config.stash.get(LAB_UP, None)
    if bringing_up is None:
        return
    try:
        started = bringing_up.result()
    except Exception:
        return
    with open(LAB_STATE / "up.log", "a") as log:
        local_lab.stop_daemons(_lab_target(), lambda line: print(line, file=log, flush=True), started)


# The compose flavour among a test's parameter ids (`test[v1]`, `test[v2-case3]`).
FLAVOUR_ID = re.compile(rf"[\[-]({'|'.join(FLAVOUR_PROFILES)})[\]-]")
# Lab modules that must not run beside each other: the fleet counts the connections each namespace
# host's sshd accepted, and these modules connect to those sshds too.
SHARED_GROUPS = {module: "namespace-sshds" for module in ("test_lab_fleet", "test_lab_host_shapes", "test_lab_sudo")}
# Both halves of the release tests on one worker: they take tags of one registry repository off
# this machine's engine and prune its images.
SHARED_GROUPS["test_lab_releases"] = "test_lab_releases"


def lab_group(nodeid: str) -> str | None:
    """The group a lab module's test runs in (one worker runs a group, in order: its tests build on
    each other and share module fixtures); None for a unit test, which may run anywhere. A module's
    tests under each compose flavour are a group of their own: their module fixtures are the
    flavour's (own hosts, containers, folders), so the halves of a long module run side by side."""
    module = Path(nodeid.split("::", 1)[0]).stem
    if not module.startswith("test_lab_"):
        return None
    if module in SHARED_GROUPS:
        return SHARED_GROUPS[module]
    flavour = FLAVOUR_ID.search(nodeid.split("::", 1)[-1])
    return f"{module}[{flavour.group(1)}]" if flavour else module


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """xdist's scope scheduling with lab_group as the scope (a unit test is a scope of its own).
    Our own rule, not the xdist_group mark: pytest 9.2 ignores the node ids xdist 3.8 rewrites for it."""
    from xdist.scheduler import LoadScopeScheduling

    class LabGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return lab_group(nodeid) or nodeid

    return LabGroupScheduling(config, log)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--lab-durations", action="store_true",
                     help=f"after a run that passes, write each lab group's seconds to {LAB_DURATIONS.name}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Unit tests first, while the lab comes up; then the lab groups, the longest first (by
    LAB_DURATIONS; a group it lacks by its count of tests), so the workers end together (with
    --no-loadscope-reorder, xdist keeps this order)."""
    sizes: dict[str, int] = {}
    for item in items:
        group = lab_group(item.nodeid)
        if group:
            sizes[group] = sizes.get(group, 0) + 1
    measured = json.loads(LAB_DURATIONS.read_text()) if LAB_DURATIONS.exists() else {}
    per_test = sum(measured.values()) / max(1, sum(sizes.get(group, 0) for group in measured))
    expected = {group: measured.get(group, count * per_test) for group, count in sizes.items()}
    items.sort(key=lambda item: (lab_group(item.nodeid) is not None, -expected.get(lab_group(item.nodeid) or "", 0),
                                 lab_group(item.nodeid) or ""))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """The setup that waited for lab.up says how long, so the group's duration leaves it out."""
    report = (yield).get_result()
    if call.when == "setup" and LAB_WAITED:
        report.user_properties.append(("lab_wait", LAB_WAITED.pop()))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    group = lab_group(report.nodeid)
    if group:
        waited = sum(value for name, value in report.user_properties if name == "lab_wait")
        GROUP_SECONDS[group] = GROUP_SECONDS.get(group, 0.0) + report.duration - waited


def pytest_configure_node(node) -> None:
    """xdist: whether this run brings the lab up, as its controller decided, for each worker."""
    node.workerinput["starts_lab"] = _runs_lab_tests(node.config)


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> local_lab.Lab:
    """The lab target, once this run's lab.up is done (see pytest_sessionstart)."""
    workerinput = getattr(request.config, "workerinput", None)
    if not (workerinput["starts_lab"] if workerinput else _runs_lab_tests(request.config)):
        pytest.fail("this run starts no lab (-m excludes lab tests, or no lab module is named); mark the test `lab`")
    started = time.monotonic()
    deadline = started + LAB_UP_TIMEOUT
    while not LAB_READY.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the lab was not up after {LAB_UP_TIMEOUT} s; see {LAB_STATE / 'up.log'}")
        time.sleep(1)
    error = json.loads(LAB_READY.read_text())["error"]
    if error:
        pytest.fail(f"lab.up failed: {error} (see {LAB_STATE / 'up.log'})")
    LAB_WAITED.append(time.monotonic() - started)
    return _lab_target()


@contextmanager
def command_lines_seen():
    """Every process command line on this machine (the lab's host too) while the block runs."""
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines())
            time.sleep(0.02)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def fails_with(run: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit 1, no traceback, and a last line `error: ...` holding every expected text."""
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for text in expected:
        assert text in last, last
    return last


def deployed_once(host: LabHost, compose: str) -> LabHost:
    """The host with the admin's compose file in place and a first deploy done."""
    host.root.joinpath("compose.yml").write_text(compose)
    first = host.run("deploy", "--host", host.name)
    assert first.returncode == 0, first.stderr
    return host


def copy_templates(folder: Path) -> Path:
    """A copy of the repo's templates that a test may change."""
    for template in (REPO / "templates").iterdir():
        (folder / template.name).write_text(template.read_text())
    return folder


def _worker_index() -> int:
    """0 for xdist's gw0 (or a run without xdist), 1 for gw1, ..."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


# Each worker's own block of ports, below Linux's ephemeral range (32768-60999), where outgoing
# connections (SSH, HTTP) take theirs: a port handed out here is never taken by another worker or
# by a client socket before the gateway binds it.
_PORTS = itertools.count(20000 + 1000 * _worker_index())
# And of privileged ports (below 1024: root's, or a process's with CAP_NET_BIND_SERVICE), as 443 is.
_PRIVILEGED_PORTS = iter(range(800 + 50 * _worker_index(), 850 + 50 * _worker_index()))


def free_port(privileged: bool = False, run: int = 1) -> int:
    """A loopback port of this worker's block that nothing listens on now; with RUN, the first of
    that many in a row. No port is handed out twice, so a run's others are kept for its caller."""
    streak: list[int] = []
    for port in _PRIVILEGED_PORTS if privileged else _PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                streak.append(port)
            except OSError:
                streak = []
        if len(streak) == run:
            return streak[0]
    raise AssertionError("no free port is left in this worker's block")


@dataclass
class LabHost:
    """A deploy target on the lab's sshd with its own inventory file and paths."""

    name: str
    root: Path
    inventory: Path
    entry: dict
    # The docker CLI of the host's engine: the machine's own, or a namespace host's.
    docker: tuple[str, ...] = ("docker",)

    @property
    def container(self) -> str:
        return self.entry["container_name"]

    @property
    def port(self) -> int:
        return self.entry["port"]

    def write_inventory(self, settings: dict | None = None, **vars_overrides) -> None:
        """This host's inventory: the repo's defaults, its own entry, optional overrides."""
        data = yaml.safe_load((REPO / "hosts.yaml").read_text())
        entry = {**self.entry, **(settings or {}), "vars": {**self.entry.get("vars", {}), **vars_overrides}}
        self.inventory.write_text(yaml.safe_dump({"defaults": data["defaults"], "hosts": {self.name: entry}}))

    def snapshot(self) -> dict:
        """Every file we manage (bytes) and the container's identity: equal snapshots, unchanged host."""
        files = [self.root / "compose.yml", self.root / "litellm/config.yaml", self.root / "litellm/litellm.env"]
        state = {str(path): path.read_bytes() if path.is_file() else "a directory" if path.is_dir() else None
                 for path in files}
        found = subprocess.run([*self.docker, "inspect", self.container], capture_output=True, text=True)
        container = json.loads(found.stdout)[0] if found.returncode == 0 else None
        state["container"] = (container["Id"], container["State"]["StartedAt"]) if container else None
        return state

    def run(self, *argv: str, program: str = "invoke", env: dict | None = None) -> subprocess.CompletedProcess:
        """`inv ARGV` (or `fab`) from the repo, pointed at this host's inventory through Invoke's config."""
        prefix = "INVOKE" if program == "invoke" else "FABRIC"
        env = {**os.environ, f"{prefix}_LITELLM_INVENTORY": str(self.inventory), **(env or {})}
        return subprocess.run([sys.executable, "-m", program, *argv], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)

    def crash_at_start(self) -> dict:
        """Vars with which the next deploy passes every check and then crash-loops: LiteLLM exits
        at start when it cannot import a callback its config names (1.106.2: "Could not import
        handler", exit 3). The env file changes too, so compose recreates the container, as it
        does for a new secret."""
        variables = self.entry.get("vars", {})
        return {"litellm_settings": {**variables.get("litellm_settings", {}),
                                     "callbacks": ["litedeploy_no_such_module.handler"]},
                "env": {**variables.get("env", {}), "LITEDEPLOY_CRASH_AT_START": "1"}}

    def followed_line(self, grep: str, action, wait: float = 60) -> str:
        """The first line `ops.logs --follow --tail 0 --grep GREP` prints after ACTION runs ("" if none
        came within WAIT seconds). Other lines may reach the log meanwhile (a second worker's start
        notes), so the test names the one it waits for."""
        follow = subprocess.Popen(
            [sys.executable, "-m", "invoke", "ops.logs", "--host", self.name, "--follow", "--tail", "0",
             "--grep", grep],
            cwd=REPO, env={**os.environ, "INVOKE_LITELLM_INVENTORY": str(self.inventory)},
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        # Killing the follower ends a readline that would otherwise wait forever.
        deadline = threading.Timer(wait, follow.kill)
        try:
            time.sleep(3)
            action()
            deadline.start()
            return follow.stdout.readline()
        finally:
            deadline.cancel()
            follow.kill()
            follow.wait(timeout=10)

    def inspect(self) -> dict:
        out = subprocess.run([*self.docker, "inspect", self.container], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)[0]

    def remove_container(self) -> None:
        """The gateway's container and the networks compose made for its project (v1 makes a default
        one): left behind, they use up Docker's 31 default address pools over a few runs."""
        project = next(iter(subprocess.run([*self.docker, "inspect", "--format",
                                            '{{index .Config.Labels "com.docker.compose.project"}}', self.container,
                                            *(f"{self.container}-{role}" for role in ("blue", "green"))],
                                           capture_output=True, text=True).stdout.split()), "")
        # With vars.zero_downtime, its proxy and two instances too.
        subprocess.run([*self.docker, "rm", "-f", self.container,
                        *(f"{self.container}-{role}" for role in ("proxy", "blue", "green"))], capture_output=True)
        if project:
            networks = subprocess.run([*self.docker, "network", "ls", "-q", "--filter",
                                       f"label=com.docker.compose.project={project}"],
                                      capture_output=True, text=True).stdout.split()
            # A network another container of the project still uses (the team's own) stays.
            for network in networks:
                subprocess.run([*self.docker, "network", "rm", network], capture_output=True)


def make_lab_host(lab: local_lab.Lab, root: Path, name: str, profile: str = "standard") -> LabHost:
    """A host on the machine's own Docker engine, reached through the sshd of a host profile."""
    data = yaml.safe_load((REPO / "hosts.yaml").read_text())
    entry = dict(data["hosts"]["lab"])
    for key in LOCAL_PATHS:
        if key in entry:
            entry[key] = str(REPO / entry[key])
    entry.update(compose_file=str(root / "compose.yml"), config_dir=str(root / "litellm"),
                 container_name=f"litedeploy-test-{name}", ssh_port=lab.port(profile),
                 # The two after the port are a front door's instances' (vars.instance_ports unset):
                 # handed to another host, the two gateways' deploys would fight over them.
                 port=free_port(run=3))
    host = LabHost(name, root, root / "hosts.yaml", entry)
    host.write_inventory()
    return host


def make_namespace_host(lab: local_lab.Lab, root: Path, name: str, index: int) -> LabHost:
    """A host on namespace host N of the lab (its own address, hardened sshd and Docker engine),
    shaped like fox: bridge networking with the gateway's port published on every address."""
    host = make_lab_host(lab, root, name)
    where = lab.namespace_host(index)
    host.entry.update(address=where.address, ssh_port=22, network_mode="bridge", bind="0.0.0.0")
    host.docker = where.docker
    host.write_inventory()
    return host


def lab_secrets(**changes) -> dict:
    from litedeploy.secrets import decrypt_secrets
    return {**decrypt_secrets(str(REPO / "lab/secrets.lab.enc.yaml"), str(REPO / "lab/age-key.lab.txt")), **changes}


def _name_of(text: str) -> str:
    """A name Docker accepts for a container, from a test's or module's name."""
    return "".join(c if c.isalnum() else "-" for c in text.replace("test_", "")).strip("-")[:48]


@pytest.fixture
def fresh_lab_host(lab, tmp_path_factory, request, compose_flavour):
    """A host of its own for one test; its container is removed afterwards."""
    made = []

    # The parameters (the compose flavour first) stay in the name: v1 and v2 of a test run side by
    # side on the machine's engine, and one container name for both made each remove the other's.
    params = getattr(request.node, "callspec", None)
    label = _name_of(params.id) if params else ""
    base = f"{_name_of(request.node.originalname)[:47 - len(label)]}-{label}".strip("-")

    def make(suffix: str = "") -> LabHost:
        name = base + suffix
        host = make_lab_host(lab, tmp_path_factory.mktemp(name), name, FLAVOUR_PROFILES[compose_flavour])
        made.append(host)
        return host
    yield make
    for host in made:
        host.remove_container()


@pytest.fixture(scope="module")
def lab_host(lab, tmp_path_factory, request, compose_flavour) -> LabHost:
    name = _name_of(f"{request.module.__name__.rsplit('.', 1)[-1]}-{compose_flavour}")
    host = make_lab_host(lab, tmp_path_factory.mktemp(name), name, FLAVOUR_PROFILES[compose_flavour])
    yield host
    host.remove_container()


TEAM_COMPOSE = "services:\n  web:\n    image: nginx:alpine\n"


@pytest.fixture(scope="module")
def deployed(lab_host) -> LabHost:
    """The module's host with a team's compose file and a first deploy done."""
    return deployed_once(lab_host, TEAM_COMPOSE)


@pytest.fixture
def host(deployed) -> LabHost:
    """The deployed host, its inventory put back after each test."""
    yield deployed
    deployed.write_inventory()
