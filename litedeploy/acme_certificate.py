"""The front door's certificate from an ACME CA (vars.tls.acme), as Ansible's acme_certificate
module gets one: from the machine the tasks run on, the CA's HTTP-01 answers put on the host.

A deploy asks for a certificate where the host holds none that serves vars.server_names for more
than renew_before_days (`tls.renewal_due`); the exchange is certbot's own `acme` library (RFC 8555),
with a new account key each time (nothing to keep; Let's Encrypt allows 10 new accounts per address
in 3 hours, and a renewal comes every 60 days). While the CA checks, the HTTP-01 answers are served:
- by the door itself where it runs with its plain-HTTP frontend (haproxy.cfg.j2, `frontend acme`):
  its map rewritten and HAProxy reloaded, which drops no request;
- else (the first certificate: HAProxy serves no HTTPS without one) by a one-off container of the
  door's image on that port, gone before the deploy goes on.
The certificate and its key then go through the deploy as an admin's own would (`render_host`):
checked, written 0600, the door reloaded. Nothing of it is written on this machine.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import posixpath
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import TextIO

import josepy
import paramiko
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import tls
from .commands import line, script
from .commands.files import place
from .errors import DeployError, RenderError
from .facts import HostFacts
from .frontdoor import pending_path, proxy_dir
from .host import Host
from .render import Templates, render_responder
from .session import Session
from .shapes import ip_address
from .tls import KeyPair
from .verify import tunnel_gateway

# How long the CA may take to check the answers and issue (Let's Encrypt: seconds).
ISSUE_TIMEOUT = 120
# How long the door (or the one-off) may take to serve the answers once told to.
SERVING_TIMEOUT = 20
# A token and a key authorization, as RFC 8555 words them: base64url, and two of them joined by a dot.
ANSWER = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)?")
Publisher = Callable[[Mapping[str, str]], AbstractContextManager[None]]


def renewal(session: Session, facts: HostFacts, now: datetime.datetime) -> tuple[KeyPair | None, str | None]:
    """(the certificate and key the door is to serve, why a deploy asks the CA for a new one: None
    where they serve vars.server_names for longer than renew_before_days); the one the host holds,
    or one the CA issued that no deploy installed yet (`frontdoor.pending_path`). (None, None) where
    the door takes no certificate from an ACME CA. Raises RenderError where asking would not mend
    it: nothing can be verified here, or the CA's last certificate is refused only for its CA."""
    host, door = session.host, session.layout.door
    settings = tls.acme_settings(host.vars.get("tls"))
    if door is None or settings is None or door.certificate_path is None:
        return None, None
    where = f"hosts.yaml (host {host.name})"
    names = _names(host)
    roots = tls.trusted(host.vars["tls"].get("ca_file"), where)
    texts = (facts.files.certificate_text, facts.files.pending_certificate_text)
    held, pending = (tls.from_file(text, door.certificate_path) if text else None for text in texts)
    try:
        reason = tls.renewal_due(held, names, roots, now, settings["renew_before_days"])
        if reason is None or pending is None:
            return held, reason
        if tls.renewal_due(pending, names, roots, now, settings["renew_before_days"]) is None:
            return pending, None
    except RenderError as error:
        raise RenderError(f"{where}: vars.tls.acme: {error}") from None
    if tls.untrusted_only(pending, names, now):
        raise RenderError(f"{where}: the certificate {settings['directory']} issued last is refused here for its "
                          "CA alone; put that CA's root certificate in vars.tls.ca_file (no new one is asked for: "
                          "it would be refused the same way)")
    return held, reason


def for_deploy(session: Session, templates: Templates, facts: HostFacts, now: datetime.datetime,
               out: TextIO) -> KeyPair | None:
    """The certificate and key the door is to serve (vars.tls.acme): the host's own where it serves
    for long enough (`renewal`), else a new one from the CA, kept on the host at once (0600) until a
    deploy installs it; None where the door takes no ACME certificate. Raises DeployError (the CA
    refused, or did not answer) with the host left as it was."""
    held, reason = renewal(session, facts, now)
    if reason is None:
        return held
    host, door = session.host, session.layout.door
    assert door is not None and door.acme_port is not None
    settings, names = tls.acme_settings(host.vars["tls"]) or {}, _names(host)
    out.write(f"{host.name}: {reason}; asking {settings['directory']} for one for {', '.join(names)}\n")
    proxy, config = facts.gateway.instances.get("proxy"), facts.files.proxy_text or ""
    bind = f"\n    bind {session.runtime.door.network(host).bind}:{door.acme_port}\n"
    door_answers = proxy is not None and proxy.running and f"\nfrontend acme\n{ACME_COMMENT}" in config and bind in config
    publisher = _through_door if door_answers else _one_off
    issued = issue(settings, names, lambda answers: publisher(session, templates, answers), host.name)
    _put(session, issued.text, pending_path(host), "0600")
    lifetime = tls.lifetime_days(issued)
    if lifetime <= settings["renew_before_days"]:
        out.write(f"{host.name}: warning: {settings['directory']} issues certificates of {lifetime} days, no more than "
                  f"vars.tls.acme.renew_before_days ({settings['renew_before_days']}): every deploy will ask for a "
                  f"new one; set it to about {lifetime // 3}\n")
    return issued


# The first line of the frontend's comment (templates/haproxy-acme.cfg.j2): the door answers the CA.
ACME_COMMENT = "    # Plain HTTP beside HTTPS (vars.tls.acme)"
# Accounts made in this run, by directory: a fleet's hosts share one (Let's Encrypt allows 10 new
# accounts per address in 3 hours); a new run makes a new one, so none is kept anywhere.
_ACCOUNTS: dict[str, tuple[josepy.JWKEC, messages.RegistrationResource]] = {}
_ACCOUNTS_LOCK = threading.Lock()


def issue(settings: Mapping[str, object], names: Sequence[str], publish: Publisher, where: str) -> KeyPair:
    """A certificate for NAMES (DNS names, IP addresses) from the CA at settings["directory"], its
    key a new ECDSA P-256 one; PUBLISH(answers: token -> key authorization) serves the HTTP-01
    answers while the CA checks them. The account agrees to the CA's terms of service, as certbot's
    --agree-tos does. Raises DeployError naming the CA and what it said."""
    directory = str(settings["directory"])
    key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    addresses = [ipaddress.ip_address(name) for name in names if ip_address(name)]
    csr = crypto_util.make_csr(key_pem, [name for name in names if not ip_address(name)], ipaddrs=addresses or None)
    try:
        with _ACCOUNTS_LOCK:
            account, registration = _ACCOUNTS.get(directory, (josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1())),
                                                              None))
            network = client.ClientNetwork(account, account=registration, alg=josepy.ES256, user_agent="litedeploy")
            acme = client.ClientV2(client.ClientV2.get_directory(directory, network), network)
            if registration is None:
                email = settings.get("email")
                network.account = acme.new_account(messages.NewRegistration.from_data(
                    email=str(email) if email else None, terms_of_service_agreed=True))
                _ACCOUNTS[directory] = (account, network.account)
        order = acme.new_order(csr)
        answers, pending = {}, []
        for authorization in order.authorizations:
            offered = [body for body in authorization.body.challenges if isinstance(body.chall, challenges.HTTP01)]
            if authorization.body.status == messages.STATUS_VALID:
                continue
            if not offered:
                raise DeployError(f"{where}: {directory} offers no HTTP-01 challenge for "
                                  f"{_said(authorization.body.identifier.value)}")
            response, validation = offered[0].response_and_validation(account)
            answers[offered[0].chall.encode("token")] = validation
            pending.append((offered[0], response))
        with publish(answers):
            for body, response in pending:
                acme.answer_challenge(body, response)
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=ISSUE_TIMEOUT)
            order = acme.poll_and_finalize(order, deadline=deadline)
    except errors.ValidationError as error:
        said = [_said(body.error.detail or body.error) for failed in error.failed_authzrs
                for body in failed.body.challenges if body.error]
        raise DeployError(f"{where}: {directory} could not check the HTTP-01 answer: {'; '.join(said) or error} "
                          "(vars.tls.acme.http_port must be the port the names reach, 80 for a public CA)") from None
    except messages.Error as error:
        raise DeployError(f"{where}: {directory} refused: {_said(error.detail or error)}") from None
    except (errors.Error, josepy.errors.Error, requests.RequestException, KeyError, TypeError, ValueError) as error:
        raise DeployError(f"{where}: {directory} did not answer as an ACME CA: {_said(error)}") from None
    return KeyPair(tls.pem(order.fullchain_pem), tls.pem(key_pem.decode()), f"the certificate {directory} issued",
                   "its key")


def _names(host: Host) -> list[str]:
    """The names the certificate is for (vars.server_names), as the CA is asked for them."""
    return [str(name) for name in host.vars.get("server_names") or ()]


def _said(text: object) -> str:
    """What a CA (or its library) said, as one line without control characters."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", str(text))[:300]


def challenges_map(answers: Mapping[str, str]) -> str:
    """The door's map of HTTP-01 answers (tls.CHALLENGES_NAME): TOKEN KEY_AUTHORIZATION a line.
    Raises DeployError for a token or answer that is not base64url (a CA's text goes into HAProxy's file)."""
    for token, answer in answers.items():
        if not ANSWER.fullmatch(token) or not ANSWER.fullmatch(answer):
            raise DeployError(f"the ACME CA's token {token[:40]!r} is not base64url; refused")
    return "".join(f"{token} {answer}\n" for token, answer in answers.items())


@contextmanager
def _through_door(session: Session, templates: Templates, answers: Mapping[str, str]) -> Iterator[None]:
    """The answers in the running door's map, HAProxy reloaded; emptied and reloaded again after."""
    door = session.layout.door
    assert door is not None and door.challenges_path is not None
    _put(session, challenges_map(answers), door.challenges_path)
    try:
        session.remote.run(session.runtime.door.reload(session.host))
        _until_served(session, answers)
        yield
    finally:
        _put(session, "", door.challenges_path)
        session.remote.run(session.runtime.door.reload(session.host), check=False)
    # Served no more before the deploy goes on: the certificate's own reload follows within a
    # second, and HAProxy's master loses a USR2 that comes while it still loads the last one. A door
    # that never stops serving them fails that reload's check, named there, the certificate kept
    # (`for_deploy` keeps it once this returns); it is not lost here.
    with suppress(DeployError):
        _until_served(session, answers, served=False)


@contextmanager
def _one_off(session: Session, templates: Templates, answers: Mapping[str, str]) -> Iterator[None]:
    """The answers served by a one-off container of the door's image on vars.tls.acme.http_port
    (`DoorPart.responder`), removed after, whatever happened."""
    host, door = session.host, session.layout.door
    assert door is not None and door.acme_port is not None
    folder = posixpath.join(proxy_dir(host), "acme-responder")
    network = session.runtime.door.network(host)
    config = render_responder(templates, host, network, door.acme_port)
    start, stop = session.runtime.door.responder(host, door.image, folder, door.acme_port)
    stage = session.remote.upload([challenges_map(answers), config], ["map", "cfg"])
    session.remote.run(script("set -e", line("install", "-d", "-m", "0755", folder),
                              place(f"{stage}/map", f"{folder}/{tls.CHALLENGES_NAME}", "0644"),
                              place(f"{stage}/cfg", f"{folder}/haproxy.cfg", "0644"), line("rm", "-rf", stage)))
    try:
        session.remote.run(script(f"{line(*stop)} >/dev/null 2>&1", "true"))  # one a killed run left holding the port
        started = session.remote.run(start, check=False)
        if started.failed:
            raise DeployError(f"{host.name}: cannot answer the ACME CA on port {door.acme_port} "
                              f"(vars.tls.acme.http_port): {session.remote.last_line(started)}")
        _until_served(session, answers)
        yield
    finally:
        session.remote.run(script(f"{line(*stop)} >/dev/null 2>&1", line("rm", "-rf", folder)), check=False)


def _put(session: Session, text: str, path: str, mode: str = "0644") -> None:
    """TEXT written over PATH at once, root's with MODE; staged from stdin, never on a command line."""
    stage = session.remote.upload([text], ["map"])
    session.remote.run(script("set -e", place(f"{stage}/map", path, mode), line("rm", "-rf", stage)))


def _until_served(session: Session, answers: Mapping[str, str], served: bool = True) -> None:
    """Waits until the host's port answers each token as the CA will ask it (SERVED false: until it
    answers it no more); raises DeployError after SERVING_TIMEOUT seconds, saying what it answered."""
    host, door = session.host, session.layout.door
    assert door is not None and door.acme_port is not None
    name = (_names(host) or [host.local_address])[0]
    gateway = tunnel_gateway(session.remote, host.local_address, door.acme_port, name, "")
    deadline, said = time.monotonic() + SERVING_TIMEOUT, "nothing"
    for token, answer in answers.items():
        while True:
            try:
                reply = gateway.request("GET", f"/.well-known/acme-challenge/{token}", auth=False, timeout=5)
                if (reply.status == 200 and reply.body.decode(errors="replace").strip() == answer) == served:
                    break
                said = f"HTTP {reply.status}"
            except (OSError, http.client.HTTPException, paramiko.SSHException) as error:
                said = str(error) or type(error).__name__
            if time.monotonic() > deadline:
                raise DeployError(f"{host.name}: port {door.acme_port} (vars.tls.acme.http_port) "
                                  f"{'does not serve' if served else 'still serves'} the HTTP-01 answer "
                                  f"after {SERVING_TIMEOUT} s: {said}")
            time.sleep(0.3)
