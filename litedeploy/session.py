"""A host opened for one task: its secrets decrypted into memory and one SSH connection, and what a
task asks of the host, each a command built by `commands`, run by `remote`, read by `facts`."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from . import frontdoor, runtimes
from .commands import ServiceCommands, argv, container, files, line, lock, script
from .commands.facts import gather, parse_facts
from .errors import RemoteError, VerifyError
from .facts import GatewayState, HostFacts
from .frontdoor import Topology, topology
from .host import Host
from .plan import DesiredFiles, FileChange, Plan, Preparation
from .releases import Release, parse_releases, release_names
from .runtimes.base import Runtime
from .secrets import Redactor, SecretValues, decrypt_secrets
from .verify import Gateway, gateway_failure, tunnel_gateway, wait_until_live

if TYPE_CHECKING:
    from .remote import Remote

SUDO_PASSWORD = "SUDO_PASSWORD"


# Run by the gateway's own Python, which has the redis client LiteLLM uses (litellm[proxy] needs it).
REDIS_PING = ("import os, sys, redis\n"
              "client = redis.Redis(host=sys.argv[1], port=int(sys.argv[2]), socket_timeout=5,\n"
              "                     password=os.environ.get('REDIS_PASSWORD') or None)\n"
              "try:\n    client.ping()\nexcept redis.RedisError as error:\n"
              "    sys.exit(f'{type(error).__name__}: {error}')\n"
              "print('PONG, ' + ('with' if os.environ.get('REDIS_PASSWORD') else 'without') + ' a password')\n")


@dataclass(frozen=True)
class Session:
    """One task's hold on a host: its secrets, its connection, and its runtime and topology, resolved
    once (`opened`) and passed down. HOST may be one gateway of the host's (an instance behind the
    front door) while a step drives it."""

    host: Host
    secrets: SecretValues
    remote: Remote
    runtime: Runtime
    layout: Topology

    @property
    def redact(self) -> Redactor:
        return self.remote.redact

    @property
    def gateway(self) -> Gateway:
        return tunnel_gateway(self.remote, self.host.local_address, self.host.port, frontdoor.host_header(self.host),
                              self.secrets["LITELLM_MASTER_KEY"], frontdoor.https(self.host, self.layout.door))

    def facts(self, lock_owner: dict | None = None, break_lock: bool = False) -> HostFacts:
        """One round trip; with an owner it also tries to take the deploy lock in the same script,
        first removing a stale one when told to."""
        command, managed = facts_script(self.host, self.runtime, self.layout, lock_owner, break_lock)
        result = self.remote.run(command, check=False)
        try:
            if result.failed:
                raise RemoteError(f"{self.host.name}: reading what the host holds failed (exit {result.exited}): "
                                  f"{self.remote.last_line(result)}")
            return parse_facts(result.stdout, managed)
        except Exception:
            if lock.TAKEN in result.stdout.splitlines():
                self.remote.run(lock.release(self.host), check=False)  # never leave a lock behind
            raise

    def plan(self, desired: DesiredFiles, facts: HostFacts) -> Plan:
        """DESIRED against FACTS: the files to write and the verb (`Topology.plan`)."""
        return self.layout.plan(self.runtime, self.host, desired, facts)

    def as_deployed(self, facts: HostFacts, upgrade: bool = False) -> Host:
        """The host as a deploy would render it now: pinned where that is known without a pull, else
        as hosts.yaml asks (what `config.diff`, `ops.status` and `--check` compare with the host)."""
        release = self.runtime.release
        host = release.running(self.host, release.pinned(self.host, facts, upgrade) or release.wanted(self.host))
        return self.layout.pin(self.runtime, host, facts, upgrade, None)

    def release_names(self) -> dict[str, str]:
        """Each file a deploy writes that a release keeps -> its name in the release folder."""
        return release_names(self.runtime, self.layout.written(self.runtime, self.host))

    def serving(self, facts: HostFacts | None = None) -> Host:
        """The gateway that answers on the port: the host's, or behind the front door the live
        instance (its container, its port), as the door's configuration names it (in FACTS where
        the task read them already, else read alone)."""
        def door_facts() -> HostFacts:
            return facts or self.read(files.contents(self.host, {"proxy_file": frontdoor.config_path(self.host)}))
        return self.layout.serving(self.runtime, self.host, door_facts)

    def verbs(self, facts: HostFacts, gateway: Host | None = None) -> ServiceCommands:
        """The verbs of GATEWAY (by default the host's own)."""
        return self.runtime.driver.verbs(gateway or self.host, facts)

    def for_host(self, host: Host) -> Session:
        """This session for HOST as another profile has it (its topology resolved again)."""
        return replace(self, host=host, layout=topology(host))

    def driving(self, gateway: Host) -> Session:
        """This session with GATEWAY as the gateway it waits for and checks (an instance, the proxy)."""
        return replace(self, host=gateway)

    def read(self, command: str) -> HostFacts:
        """Facts from a script that prints some of them (a lock's holder, a container)."""
        return parse_facts(self.remote.run(command).stdout)

    def gateway_state(self) -> GatewayState | None:
        """The gateway's state as its runtime reports it (a container's, a unit's)."""
        return self.read(self.runtime.driver.state(self.host)).gateway.state

    def state_and_port(self) -> HostFacts:
        """The gateway's state and what holds the port, in one round trip."""
        return self.read(script(self.runtime.driver.state(self.host), container.port_holder(self.host.port)))

    def run_and_inspect(self, command: Sequence[str] | str) -> GatewayState | None:
        """Runs a verb (a compose verb, or systemctl's) and reads the gateway's state right after, in
        one round trip: the baseline against which a crash loop is recognised."""
        verb = f"( {command} ) >&2" if isinstance(command, str) else f"{argv(command)} >&2"
        return self.read(script("set -e", verb, f"{self.runtime.driver.state(self.host)} || true")).gateway.state

    def pull_image(self, image: str) -> tuple[tuple[str, ...], str | None]:
        """Pulls while the running container keeps serving; returns the image's registry digests and
        its architecture (amd64, arm64)."""
        result = self.remote.run(container.pull(image), check=False)
        if result.failed:
            raise RemoteError(f"{self.host.name}: cannot pull {image}: {self.remote.last_line(result)}")
        pulled = parse_facts(result.stdout)
        return pulled.docker.wanted_digests or (), pulled.docker.wanted_arch

    def reaches_redis(self, address: str, port: int) -> str:
        """Pings ADDRESS:PORT from beside the gateway (in its container, or as its service user)
        with the REDIS_PASSWORD of its environment, which never leaves the host. Raises
        VerifyError with the client's error, secrets masked."""
        result = self.remote.run(self.runtime.driver.execute(self.host, ["python3", "-c", REDIS_PING, address, str(port)]),
                                 check=False)
        if result.failed:
            raise VerifyError(f"the gateway cannot use Redis at {address}:{port} with its REDIS_PASSWORD: "
                              f"{self.redact(self.remote.last_line(result))}; LiteLLM would count limits per "
                              "instance instead, silently")
        return f"{address}:{port} answers the gateway ({result.stdout.strip()})"

    def releases(self) -> list[Release]:
        return parse_releases(self.remote.run(files.releases(self.host)).stdout)

    def prepare(self, preparation: Preparation, out: TextIO) -> None:
        """Runs a runtime's preparation (`WhatRuns.preparation`) before any file changes: its uploads
        staged, then its script and the stage's removal, whatever the outcome, in one round trip.
        Raises RemoteError naming what failed; nothing else has changed then."""
        host = self.host
        if preparation.said:
            out.write(f"{host.name}: {preparation.said}\n")
            out.flush()
        uploads = preparation.uploads
        stage = self.remote.upload([path.read_bytes() for path in uploads], [path.name for path in uploads]) \
            if uploads else None
        result = self.remote.run(script(f"( {preparation.script(stage)}\n)", "code=$?",
                                        line("rm", "-rf", stage) if stage else None, "exit $code"), check=False)
        if preparation.refused is not None and result.exited == preparation.refused:
            raise RemoteError(f"{host.name}: {self.remote.last_line(result)}; nothing else changed")
        if result.failed:
            raise RemoteError(f"{host.name}: {preparation.doing} failed, nothing else changed: "
                              f"{self.remote.last_line(result)}")

    def install(self, changes: Sequence[FileChange], deploy_id: str, commands: ServiceCommands) -> None:
        """Stages every file (secrets never on a command line), then swaps them in with one script."""
        stage = self.remote.upload([change.new for change in changes])
        result = self.remote.run(files.install(self.host, changes, stage, deploy_id, commands), check=False)
        if result.exited == files.REJECTED:
            # Compose v2 names the file it validated: the candidate beside the real one.
            reason = result.stderr.strip().splitlines()[-1]
            for change in changes:
                reason = reason.replace(files.temp_path(change), change.path)
            raise self.runtime.rejected(f"{self.host.name}:{self.layout.service_file(self.runtime, self.host)}: "
                                        f"{self.redact(reason)}")
        if result.failed:
            raise RemoteError(f"{self.host.name}: writing the files failed, the previous ones are in place: "
                              f"{self.remote.last_line(result)}")

    def restore(self, changes: Sequence[FileChange], deploy_id: str, commands: ServiceCommands,
                check: bool = True) -> None:
        """This deploy's backups of CHANGES put back, and what the runtime holds of the files reread
        (`ServiceCommands.restored`): every way back leaves the host running what its files say."""
        self.remote.run(script("set -e", files.restore(self.host, changes, deploy_id), commands.restored()),
                        check=check)

    def start_and_wait(self, command: Sequence[str] | str, out: TextIO = sys.stderr) -> float:
        """Runs a verb that (re)starts the gateway and waits until it answers; a crash loop ends the
        wait early."""
        baseline = self.run_and_inspect(command)
        seconds = wait_until_live(self.gateway, self.host.health_timeout, out,
                                  watch=lambda: gateway_failure(self.gateway_state(), baseline))
        self.check_answering_is_ours(baseline)
        return seconds

    def check_answering_is_ours(self, baseline: GatewayState | None) -> None:
        """An answer on the port may come from someone else (an old container under another name, a
        second gateway) while ours crash-loops: ours must run, unrestarted, and hold the port."""
        now = self.state_and_port()
        if now.docker.unreachable:
            raise VerifyError(f"{self.host.name}: the Docker engine stopped answering; whatever answers on port "
                              f"{self.host.port} cannot be told to be ours")
        failure = gateway_failure(now.gateway.state, baseline)
        if failure:
            raise VerifyError(f"{self.host.name}: {failure}")
        ours = self.runtime.driver.holder(self.host)
        other = now.gateway.held_by_other(ours)
        if other:
            raise VerifyError(f"{self.host.name}: port {self.host.port} answers, but from {other}, not the {ours}")


def facts_script(host: Host, runtime: Runtime, layout: Topology, lock_owner: dict | None = None,
                 break_lock: bool = False) -> tuple[str, dict[str, str]]:
    """The one script that reads HOST (`commands.facts.gather`: the lock, the files LAYOUT manages,
    RUNTIME's questions and the layout's), and the managed files by fact, for `parse_facts`."""
    managed = layout.managed_files(runtime, host)
    questions = runtime.driver.questions(host, layout.questions(runtime, host))
    return gather(host, managed, questions, lock_owner, break_lock), managed


def host_file(host: Host) -> Path:
    """secrets.<host>.enc.yaml beside the shared file: values there override the shared ones."""
    return Path(host.secrets_file).with_name(f"secrets.{host.name}.enc.yaml")


def host_secrets(host: Host) -> SecretValues:
    """The host's secrets: the shared file with its own file's values over them. While sops
    decrypts (a subprocess, so no lock held), this process loads the SSH library the task needs
    next: a no-op deploy's two slowest steps overlap."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        decrypting = pool.submit(_decrypted, host)
        importlib.import_module("litedeploy.remote")
        return decrypting.result()


def _decrypted(host: Host) -> SecretValues:
    shared = decrypt_secrets(host.secrets_file, host.age_key_file)
    own = host_file(host)
    if own == Path(host.secrets_file) or not own.exists():
        return shared
    overrides = decrypt_secrets(str(own), host.age_key_file)
    return SecretValues({**shared, **overrides}, f"{host.secrets_file} + {own}")


@contextmanager
def opened(host: Host, secrets: SecretValues | None = None) -> Iterator[Session]:
    """The sudo password, where the host needs one, comes from its secrets (SUDO_PASSWORD) or the
    environment (LITEDEPLOY_SUDO_PASSWORD); Fabric answers sudo's prompt with it on stdin."""
    secrets = secrets if secrets is not None else host_secrets(host)
    sudo_password = secrets.get(SUDO_PASSWORD) or os.environ.get(f"LITEDEPLOY_{SUDO_PASSWORD}")
    redact = Redactor.of({**secrets, SUDO_PASSWORD: sudo_password or ""})
    from .remote import Remote  # paramiko, loaded only by tasks that connect (host_secrets: while sops runs)

    with Remote(host, redact, sudo_password if host.sudo else None) as remote:
        yield Session(host, secrets, remote, runtimes.of(host), topology(host))
