"""Everything an admin checks after the deploy, each better than the manual command it replaces:
`docker ps | grep litellm`, `docker logs litellm`, `docker exec litellm env | grep AWS`, the curl
checks of /v1/models and a chat completion, and the client settings for Cline or an OpenAI SDK."""

from __future__ import annotations

import io
import json
import re
import shlex
import sys
from dataclasses import asdict, replace
from datetime import datetime, timezone

from invoke import task

from .. import frontdoor, runtimes
from ..commands import audit as audit_log
from ..envfile import env_pairs
from ..errors import CommandFailed, DeployError
from ..secrets import REDACTED, RedactedLines, fingerprint
from .target import HOSTS, PROFILE, on_each_host, reports_errors, whole_number

# What `docker logs --since` takes: a Go duration (10m, 1h30m, 2.5s), a time, or a Unix timestamp.
_SINCE = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+|\d{4}-\d{2}-\d{2}([T ][\d:.]+)?(Z|[+-]\d{2}:?\d{2})?"
                    r"|\d+(\.\d+)?")



def _valid_since(since: str) -> bool:
    """A duration or timestamp `docker logs` and journalctl both take, or a date and time that exists."""
    if not _SINCE.fullmatch(since):
        return False
    if "-" not in since:  # a duration or a Unix timestamp
        return True
    try:
        datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


PROFILE_RUNNING = "check against this profile (default: the one the host was last deployed with)"


@task(help={"host": HOSTS, "json": "print one JSON object per host instead of text"})
@reports_errors
def status(c, host=None, json_=False):
    """State, health, image, uptime, restarts, ports, and drift from the repo; exit 1 if off.

    Drift compares the files on the host with what the repo renders now; a config.yaml newer than
    the container's start means a restart is pending."""
    from ..errors import VerifyError
    from ..render import render_host
    from ..session import host_secrets, opened
    from ..status import describe, runs_line, uptime
    from ..verify import certificate_line, draining, served_certificate, wait_until_live

    def show(project, target):
        secrets = host_secrets(target)
        now = datetime.now(timezone.utc)
        with opened(target, secrets) as session:
            facts = session.facts()
            try:
                answering = facts.gateway.state is not None and wait_until_live(session.gateway, 3, io.StringIO()) >= 0
            except (VerifyError, OSError):
                answering = False
            drains = not answering and facts.gateway.state is not None and draining(session.gateway)
            certificate = None
            if frontdoor.https(target, frontdoor.topology(target).door):
                try:
                    served = served_certificate(session.gateway, 5)
                    certificate = certificate_line(served, now) if served else "plain HTTP"
                except OSError as error:
                    certificate = f"no handshake: {error}"
        session = session.for_host(running_profile(project, target, facts))
        target, runtime, layout = session.host, session.runtime, session.layout
        desired = render_host(project.templates, session.as_deployed(facts), secrets, runtime)
        report = replace(describe(target, runtime, layout, facts, desired, answering, now, project.releases),
                         draining=drains, certificate=certificate)
        if json_:
            print(json.dumps(asdict(report)))
        else:
            health = f" ({report.health})" if report.health else ""
            print(f"{report.host}: {report.state}{health}, {'answering' if report.answering else 'draining' if report.draining else 'NOT answering'}, "
                  f"up {uptime(report.uptime_seconds)}, restarts {report.restarts}, exit code {report.exit_code}, "
                  f"profile {report.profile}")
            print(runs_line(runtime.release.details(target, report.image, report.image_id, report.digests,
                                                    layout.service_file(runtime, target))))
            print(f"  ports   {', '.join(report.ports) or '-'}")
            if report.live:
                print(f"  proxy   {report.live}")
            if report.certificate:
                print(f"  tls     {report.certificate}")
            if report.advisories:
                print(f"  exposed {'; '.join(report.advisories)} (litellm.yaml; upgrade to a fixed release)")
            drift = f"drift in {', '.join(report.drift)}: run deploy" if report.drift else "no drift"
            print(f"  config  host {report.config_on_host or 'absent'}, repo {report.config_in_repo}; {drift}"
                  + ("; config.yaml is newer than the container: a restart may be pending"
                     if report.restart_pending else ""))
        if not report.ok:
            raise DeployError(f"{target.name}: {_trouble(report)}")
    on_each_host(c, host, show)


def running_profile(project, target, facts, profile: str | None = None):
    """The host with the profile asked for, else the one its last deploy used (named in config.yaml):
    checks are made against what the host was deployed to run."""
    from ..status import deployed_profile
    return project.inventory.with_profile(target, profile or deployed_profile(facts.files.config_text)
                                          or target.profile)


def _trouble(report) -> str:
    if report.state != "running":
        return f"litellm is {report.state}"
    if report.draining:
        from ..verify import DRAINING
        return f"litellm answers {DRAINING}"
    if not report.answering:
        return "litellm does not answer /health/liveliness"
    return "the host differs from the repo"


@task(help={"host": HOSTS, "last": "how many recent deploys (default 20)",
            "json": "print one JSON object per deploy instead of text"})
@reports_errors
def history(c, host=None, last="20", json_=False):
    """The host's deploys, upgrades and rollbacks from its audit log, newest last; `kept` marks a
    release that `inv rollback --to ID` can go back to."""
    from ..commands.files import releases_dir
    from ..releases import history as entries_of
    from ..session import opened
    count = whole_number("last", last, 1)

    def show(project, target):
        with opened(target) as session:
            lines = session.remote.run(audit_log.history(target, count, releases_dir(target))).stdout.splitlines()
        kept = set(lines[-1].split()[1:]) if lines and lines[-1].startswith("releases") else set()
        entries = entries_of(lines[:-1], kept)
        if not entries:
            print(f"{target.name}: no deploys recorded in {target.config_dir}/deploys.log")
        for entry in entries:
            if json_:
                print(json.dumps({"host": target.name, **asdict(entry)}))
                continue
            mark = "kept" if entry.kept else "    "
            print(f"{target.name}  {entry.id:<24} {mark}  {entry.action:<8} {entry.result:<11} {entry.user:<20} "
                  f"{entry.image or '-'}" + (f"  ({entry.detail})" if entry.detail else ""))
    on_each_host(c, host, show)


@task(help={"host": HOSTS, "last": "how many recent entries (default 50)"})
@reports_errors
def audit(c, host=None, last="50"):
    """The host's audit log as it is: one JSON object per deploy, upgrade, rollback, remove and
    compose task (who, from where, which commit, what changed, the result)."""
    from ..session import opened
    count = whole_number("last", last, 1)

    def show(project, target):
        with opened(target) as session:
            lines = session.remote.run(audit_log.last(target, count)).stdout.splitlines()
        for line in lines:
            print(f"{target.name} {line}")
        if not lines:
            print(f"{target.name}: nothing recorded in {target.config_dir}/deploys.log")
    on_each_host(c, host, show)


@task(name="exec", help={"host": HOSTS, "command": "the command line to run in the container, quoted as one "
                                                    "argument (split like a shell, not run by one)"})
@reports_errors
def exec_(c, host=None, command=None):
    """Run a command in the litellm container (docker exec, no terminal), or on a systemd host as the
    service's user with its environment (systemd-run); secrets in its output masked."""
    from ..session import opened
    if not command:
        raise DeployError("ops.exec needs --command 'ARGV...' (for example --command 'python3 --version')")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise DeployError(f"--command {command!r}: {exc}") from None

    def run(project, target):
        with opened(target) as session:
            gateway = session.serving()
            out = RedactedLines(sys.stdout, session.redact, lambda line: True)
            code = session.remote.stream(session.runtime.driver.execute(gateway, argv), out)
            out.close()
        if code not in (0, None):
            raise CommandFailed(f"{target.name}: {argv[0]} exited with {code} in the {session.runtime.driver.holder(gateway)}", code)
    on_each_host(c, host, run, streams=True)


@task(help={"host": HOSTS, "tail": "how many recent lines (default 100)", "follow": "keep streaming new lines",
            "since": "only lines since this time (10m, 2h, 2026-11-22T10:00)",
            "grep": "only lines matching this regular expression"})
@reports_errors
def logs(c, host=None, tail="100", follow=False, since=None, grep=None):
    """The litellm container's log lines (a systemd host: its unit's journal), every secret value masked."""
    from ..session import opened
    lines = whole_number("tail", tail)
    try:
        pattern = re.compile(grep) if grep else None
    except re.error as exc:
        raise DeployError(f"--grep {grep!r} is not a regular expression: {exc}") from None
    if since is not None and not _valid_since(since):
        raise DeployError(f"--since {since!r} is neither a duration (10m, 1h30m) nor a time (2026-11-23T10:00:00)")

    def show(project, target):
        with opened(target) as session:
            gateway = session.serving()
            out = RedactedLines(sys.stdout, session.redact, pattern.search if pattern else lambda line: True)
            code = session.remote.stream(session.runtime.driver.logs(gateway, lines, follow, since), out)
            out.close()
        if code not in (0, None):
            raise DeployError(f"{target.name}: {session.runtime.driver.logs(gateway, lines)[0]} failed (exit {code}): "
                              f"is the {session.runtime.driver.holder(gateway)} there?")
    on_each_host(c, host, show)


@task(help={"host": HOSTS, "profile": PROFILE_RUNNING})
@reports_errors
def env(c, host=None, profile=None):
    """Which expected variables the container has, masked, and whether they match the repo.

    Each shows only a short fingerprint, so AWS credential problems show without leaking them."""
    from ..render import render_host
    from ..session import host_secrets, opened

    def show(project, target):
        secrets = host_secrets(target)
        with opened(target, secrets) as session:
            facts = session.facts()
            target = running_profile(project, target, facts, profile)
            gateway = session.serving(facts)
            result = session.remote.run(session.runtime.driver.environment(gateway), check=False)
        expected = env_pairs(render_host(project.templates, target, secrets, runtimes.of(target)).env)
        if result.failed:
            raise DeployError(f"{target.name}: cannot read the environment of the {session.runtime.driver.holder(gateway)}: "
                              "is it running?")
        running = env_pairs(result.stdout)
        wrong = []
        for name, value in expected.items():
            if name not in running:
                state = "MISSING"
                wrong.append(name)
            elif running[name] == value:
                state = f"set {fingerprint(running[name])}, matches the repo"
            else:
                state = f"set {fingerprint(running[name])}, DIFFERS from the repo ({fingerprint(value)})"
                wrong.append(name)
            print(f"{target.name}  {name:<24} {state}")
        if wrong:
            raise DeployError(f"{target.name}: {', '.join(wrong)} not as the repo has them: deploy to fix")
    on_each_host(c, host, show)


@task(help={"host": HOSTS, "model": "chat with this model (default: the first configured)",
            "all-models": "chat with every configured model", "json": "print the results as JSON",
            "direct": "reach the gateway at this URL from here instead of through SSH",
            "profile": PROFILE_RUNNING})
@reports_errors
def smoke(c, host=None, model=None, all_models=False, json_=False, direct=None, profile=None):
    """Prove the gateway answers: health, auth, models, chat, /v1/messages, fallback; exit 1 on any failure.

    Liveliness, readiness, no key rejected, exactly the configured models listed, chat answers with
    latency, Anthropic's Messages API (what Claude Code calls), and the fallback path where
    configured. Never LiteLLM's billed /health."""
    from ..render import render_host
    from ..session import host_secrets, opened
    from ..verify import SmokePlan, direct_gateway
    from ..verify import smoke as run_smoke

    def check(project, target):
        secrets = host_secrets(target)

        def run(gateway, deployed, redis_probe=None, https=False):
            expected = SmokePlan.of(render_host(project.templates, deployed, secrets, runtimes.of(deployed)).config)
            chosen = expected.models if all_models else [model or expected.models[0]]
            return run_smoke(gateway, expected, chosen, messages_model=chosen[0], redis_probe=redis_probe,
                             https=https or frontdoor.https(deployed, frontdoor.topology(deployed).door) is not None)
        if direct:  # from here: Redis is the host's business, not asked
            trusts = frontdoor.https(target, frontdoor.topology(target).door)
            gateway = direct_gateway(target.name, direct, secrets["LITELLM_MASTER_KEY"], trusts[1] if trusts else None)
            checks = run(gateway, project.inventory.with_profile(target, profile or target.profile),
                         https=direct.startswith("https:"))
        else:
            with opened(target, secrets) as session:
                checks = run(session.gateway, running_profile(project, target, session.facts(), profile),
                             session.reaches_redis)
        if json_:
            print(json.dumps({"host": target.name, "ok": all(c.ok for c in checks),
                              "checks": [asdict(check) for check in checks]}))
        else:
            for check in checks:
                mark = "skip" if check.skipped else "ok  " if check.ok else "FAIL"
                print(f"{target.name}  {mark}  {check.name:<32} {check.seconds:6.2f}s  {check.detail}")
        failed = [check.name for check in checks if not check.ok]
        if failed:
            raise DeployError(f"{target.name}: smoke failed: {', '.join(failed)}")
    on_each_host(c, host, check)


@task(help={"host": HOSTS, "show-key": "also print the master key (it is a secret: mind your terminal)",
            "client": "print what this client needs, ready to paste: claude-code, cline or openai",
            "profile": PROFILE})
@reports_errors
def endpoints(c, host=None, show_key=False, client=None, profile=None):
    """What a client (Claude Code, Cline, an OpenAI SDK) needs: base URL and model IDs; the key on request."""
    from ..catalog import families_of
    from ..clients import CLIENTS, client_lines
    from ..render import render_host
    from ..session import host_secrets
    from ..verify import SmokePlan
    if client is not None and client not in CLIENTS:
        raise DeployError(f"--client must be one of {', '.join(CLIENTS)}, not {client!r}")

    def show(project, target):
        secrets = host_secrets(target)
        config = render_host(project.templates, target, secrets, runtimes.of(target)).config
        models = SmokePlan.of(config).models
        # Behind a door that answers only the gateway's names (name, name:port, ...), a client asks for the first.
        named = frontdoor.gateway_names(target)
        https = frontdoor.https(target, frontdoor.topology(target).door)
        scheme = "https" if https else "http"
        if target.bind in ("0.0.0.0", "::", ""):
            base = f"{scheme}://{named[1] if named else f'{target.address}:{target.port}'}"
            reach = ""
        else:
            base = f"{scheme}://{named[1] if named else f'127.0.0.1:{target.port}'}"
            resolving = f", with {named[0]} as 127.0.0.1 where the client runs (/etc/hosts)" if named else ""
            reach = (f"  (listens on {target.bind} only; from elsewhere: ssh -N -L {target.port}:"
                     f"{target.local_address}:{target.port} -p {target.ssh_port} {target.ssh_user}@{target.address}"
                     f"{resolving})")
        key = secrets["LITELLM_MASTER_KEY"] if show_key else REDACTED
        ca_file = https[1] if https else None
        if client:
            print(f"# {target.name}{reach}")
            print("\n".join(client_lines(client, base, key, models, families_of(config), ca_file)))
            return
        print(f"{target.name}: base URL  {base}{reach}")
        if ca_file:
            print(f"{target.name}: trust     the team's CA, {ca_file}: NODE_EXTRA_CA_CERTS={ca_file} for Claude Code "
                  f"and Cline (Node), SSL_CERT_FILE={ca_file} for the Python SDKs (it replaces their CAs)")
        print(f"{target.name}: OpenAI SDK base_url  {base}/v1")
        print(f"{target.name}: API key   {key if show_key else key + ' (--show-key prints it)'}")
        print(f"{target.name}: model IDs {', '.join(models)}")
    on_each_host(c, host, show, profile)
