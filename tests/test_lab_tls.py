"""HTTPS at the front door with a certificate from the team's own CA (made with openssl), kept in
the secrets file: the real OpenAI SDK and Claude Code CLI reach the gateway with only what
`ops.endpoints` prints; plain HTTP and protocols below Mozilla's intermediate profile are refused;
`ops.status` and `ops.smoke` read the certificate; a key that is not the certificate's changes
nothing. Then the same host takes its certificate from a real ACME CA on loopback (Debian's pebble,
checking the HTTP-01 answers for real): the first one answered by a one-off responder, a deploy
while it serves asking the CA nothing, one that is due renewed through the running door under a
team's load, dropping nothing; plain HTTP sent to HTTPS. Through the lab's real sshd, dockerd,
HAProxy (as the official image, a non-root user, on a privileged port) and LiteLLM."""

from __future__ import annotations

import http.client
import re
import shlex
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from conftest import LAB_STATE, encrypt_for_lab, fails_with, free_port, lab_secrets

from lab import acme_ca, claude_code, team_ca
from lab.load import Load

pytestmark = pytest.mark.lab
COMPOSE_FLAVOURS = ("v2",)  # compose plays no part in TLS; the door's other modules cover both
NAME = "127.0.0.1"  # a host without a public name: its address is what the certificate covers


@pytest.fixture(scope="module")
def tls_host(lab, lab_host, tmp_path_factory):
    """Reached through the hardened sshd (no TCP forwarding), as fox is: litedeploy's own HTTPS
    requests (the deploy's checks, status, smoke) go through bash piping both ways."""
    folder = tmp_path_factory.mktemp("team-ca")
    team_ca.issue(folder, (NAME, "gw.lab.test"))
    secrets = encrypt_for_lab(lab_secrets(TLS_CERTIFICATE_PEM=(folder / "gw.crt").read_text(),
                                          TLS_PRIVATE_KEY_PEM=(folder / "gw.key").read_text(),
                                          OTHER_KEY_PEM=(folder / "other.key").read_text()),
                              folder / "secrets.enc.yaml")
    lab_host.entry.update(port=free_port(privileged=True), secrets_file=str(secrets), ssh_port=lab.port("hardened"))
    lab_host.entry["vars"] = {**lab_host.entry["vars"], "server_names": [NAME], "instance_ports": [free_port(), free_port()],
                              "tls": {"certificate_pem": "TLS_CERTIFICATE_PEM", "private_key_pem": "TLS_PRIVATE_KEY_PEM",
                                      "ca_file": str(folder / "ca.pem")}}
    lab_host.write_inventory()
    deployed = lab_host.run("deploy", "--host", lab_host.name)
    assert deployed.returncode == 0, deployed.stderr
    lab_host.ca = folder / "ca.pem"
    lab_host.deployed = deployed
    return lab_host


def exports(text: str) -> dict[str, str]:
    return dict(shlex.split(line.removeprefix("export "))[0].split("=", 1)
                for line in text.splitlines() if line.startswith("export "))


def test_the_openai_sdk_streams_over_https_with_what_endpoints_prints(tls_host):
    """The real OpenAI SDK (in the lab's LiteLLM image, which ships it) with OPENAI_BASE_URL,
    OPENAI_API_KEY and SSL_CERT_FILE as printed, and nothing else: a chat and a stream."""
    printed = exports(tls_host.run("ops.endpoints", "--host", tls_host.name, "--client", "openai", "--show-key").stdout)
    assert printed["OPENAI_BASE_URL"] == f"https://{NAME}:{tls_host.port}/v1"
    assert printed["SSL_CERT_FILE"] == str(tls_host.ca)
    program = ("import openai\nclient = openai.OpenAI()\n"
               "said = client.chat.completions.create(model='claude-3-7-sonnet', messages=[{'role': 'user', 'content': 'hi'}])\n"
               "print(said.choices[0].message.content)\n"
               "parts = client.chat.completions.create(model='claude-3-7-sonnet', stream=True,\n"
               "    messages=[{'role': 'user', 'content': 'hi'}])\n"
               "print(''.join(part.choices[0].delta.content or '' for part in parts if part.choices))\n")
    image = tls_host.entry["image"]
    run = subprocess.run(["docker", "run", "--rm", "--network", "host", "--entrypoint", "python3",
                          "-v", f"{tls_host.ca}:{tls_host.ca}:ro", "-e", "OPENAI_BASE_URL", "-e", "OPENAI_API_KEY",
                          "-e", "SSL_CERT_FILE", image, "-c", program],
                         env={"PATH": "/usr/bin:/bin", **printed}, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines() == ["lab mock: hello from LiteLLM"] * 2


def test_claude_code_trusts_the_team_ca_from_what_endpoints_prints(tls_host, tmp_path):
    printed = exports(tls_host.run("ops.endpoints", "--host", tls_host.name, "--client", "claude-code",
                                   "--show-key").stdout)
    assert printed["NODE_EXTRA_CA_CERTS"] == str(tls_host.ca)
    key = {"ANTHROPIC_AUTH_TOKEN": printed.pop("ANTHROPIC_AUTH_TOKEN")}
    binary = claude_code.install(LAB_STATE / "claude-code")
    # In its namespace the CLI reaches the same address and port, relayed byte for byte (TLS and all).
    done = claude_code.run_in_netns(binary, "127.0.0.1", tls_host.port, key, "Reply with one word.", None, tmp_path,
                                    timeout=120, extra_env=printed, port=tls_host.port)
    assert done.returncode == 0 and "lab mock: hello from LiteLLM" in done.stdout, (done.stdout, done.stderr)
    without = {name: value for name, value in printed.items() if name != "NODE_EXTRA_CA_CERTS"}
    refused = claude_code.run_in_netns(binary, "127.0.0.1", tls_host.port, key, "Reply with one word.", None,
                                       tmp_path, timeout=120, extra_env={**without, "CLAUDE_CODE_MAX_RETRIES": "0"},
                                       port=tls_host.port)
    assert "lab mock" not in refused.stdout, "a client without the team's CA must not reach the gateway"


def handshake(port: int, ca: Path, **settings) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca))
    for name, value in settings.items():
        setattr(context, name, value)
    return context.wrap_socket(socket.create_connection((NAME, port), timeout=5), server_hostname=NAME)


def test_plain_http_and_what_mozillas_intermediate_profile_leaves_out_are_refused(tls_host):
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        plain = http.client.HTTPConnection(NAME, tls_host.port, timeout=5)
        plain.request("GET", "/health/liveliness")
        plain.getresponse()
    old = ssl.create_default_context(cafile=str(tls_host.ca))
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        old.minimum_version = old.maximum_version = version
        with pytest.raises(ssl.SSLError):
            old.wrap_socket(socket.create_connection((NAME, tls_host.port), timeout=5))
    weak = ssl.create_default_context(cafile=str(tls_host.ca))
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("AES128-SHA:AES256-SHA:AES128-GCM-SHA256")  # no forward secrecy
    with pytest.raises(ssl.SSLError):
        weak.wrap_socket(socket.create_connection((NAME, tls_host.port), timeout=5), server_hostname=NAME)
    with handshake(tls_host.port, tls_host.ca, maximum_version=ssl.TLSVersion.TLSv1_2) as twelve:
        assert twelve.version() == "TLSv1.2" and twelve.cipher()[0].startswith("ECDHE-")
    with handshake(tls_host.port, tls_host.ca) as good:
        assert good.version() == "TLSv1.3"
        good.sendall(f"GET /health/liveliness HTTP/1.1\r\nHost: {NAME}:{tls_host.port}\r\nConnection: close\r\n\r\n"
                     .encode())
        answer = b"".join(iter(lambda: good.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 200") and b"strict-transport-security: max-age=63072000" in answer.lower()


def test_status_and_smoke_read_the_certificate_and_the_key_never_shows(tls_host):
    status = tls_host.run("ops.status", "--host", tls_host.name)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"  tls     gw.lab.test, {NAME} by Lab Team CA, 28 days left" in status.stdout, status.stdout
    smoke = tls_host.run("ops.smoke", "--host", tls_host.name)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert any(" ok  " in line and "certificate" in line and "chain and name verified" in line
               for line in smoke.stdout.splitlines()), smoke.stdout
    bundle = subprocess.run(["stat", "-c", "%a %U", str(tls_host.root / "litellm/proxy/gateway.pem")],
                            capture_output=True, text=True).stdout.split()
    assert bundle == ["600", "root"]
    assert "PRIVATE KEY" not in tls_host.deployed.stdout + tls_host.deployed.stderr


def test_a_key_that_is_not_the_certificates_changes_nothing(tls_host):
    before = tls_host.snapshot()
    certificate_before = (tls_host.root / "litellm/proxy/gateway.pem").read_bytes()
    tls_host.write_inventory(tls={"certificate_pem": "TLS_CERTIFICATE_PEM", "private_key_pem": "OTHER_KEY_PEM",
                                  "ca_file": str(tls_host.ca)})
    try:
        run = tls_host.run("deploy", "--host", tls_host.name)
        fails_with(run, "OTHER_KEY_PEM (vars.tls.private_key_pem) is not the private key of the first certificate in "
                  "TLS_CERTIFICATE_PEM (vars.tls.certificate_pem)")
        assert "PRIVATE KEY" not in run.stdout + run.stderr
        assert tls_host.snapshot() == before
        assert (tls_host.root / "litellm/proxy/gateway.pem").read_bytes() == certificate_before
    finally:
        tls_host.write_inventory()


VALIDITY_DAYS = 50  # pebble's certificates: more than the 30 days before the end a deploy renews at


@pytest.fixture(scope="module")
def acme(tls_host, tmp_path_factory):
    """pebble checking HTTP-01 answers on a port of the lab's; litedeploy's ACME client trusts
    pebble's own listener as requests is told to (REQUESTS_CA_BUNDLE)."""
    http_port = free_port()
    with acme_ca.running(tmp_path_factory.mktemp("acme-ca"), http_port, free_port, VALIDITY_DAYS) as ca:
        tls_host.entry["vars"] = {**tls_host.entry["vars"], "allow_mock_testing": True, "tls": {
            "acme": {"directory": ca.directory, "email": "ops@lab.test", "http_port": http_port},
            "ca_file": str(ca.root)}}
        tls_host.write_inventory()
        yield ca, http_port, {"REQUESTS_CA_BUNDLE": str(ca.listener_ca)}


def plain(port: int, path: str, name: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(NAME, port, timeout=5)
    connection.request("GET", path, headers={"Host": name})
    reply = connection.getresponse()
    reply.read()
    connection.close()
    return reply


def test_an_own_certificate_gives_way_to_one_from_an_acme_ca_and_plain_http_is_sent_to_https(tls_host, acme):
    ca, http_port, env = acme
    run = tls_host.run("deploy", "--host", tls_host.name, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    # The team CA's certificate is no longer one the clients trust (ca_file is the ACME CA's root).
    assert "the certificate it holds would not serve (" in run.stderr and f"asking {ca.directory} for one" in run.stderr
    with handshake(tls_host.port, ca.root) as served:
        issuer = dict(item[0] for item in served.getpeercert()["issuer"])["commonName"]
    assert issuer.startswith("Pebble Intermediate CA")
    # The door had no plain-HTTP frontend yet: a one-off answered, and is gone.
    names = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True).stdout
    assert f"{tls_host.container}-acme" not in names.split()
    assert (tls_host.root / "litellm/proxy/acme-challenges.map").read_text() == ""
    assert "PRIVATE KEY" not in run.stdout + run.stderr
    status = tls_host.run("ops.status", "--host", tls_host.name)
    assert re.search(rf"tls     {NAME} by Pebble Intermediate CA \w+, {VALIDITY_DAYS - 1} days left", status.stdout), \
        status.stdout
    moved = plain(http_port, "/v1/models?x=1", NAME)
    assert (moved.status, moved.getheader("Location")) == (301, f"https://{NAME}:{tls_host.port}/v1/models?x=1")
    assert plain(http_port, "/", "evil.example.com").status == 421


def serial(port: int, ca: Path) -> int:
    with handshake(port, ca) as served:
        return served.getpeercert()["serialNumber"]


def test_an_acme_certificate_that_serves_is_kept_and_one_due_is_renewed_through_the_door_dropping_nothing(
        tls_host, acme):
    ca, http_port, env = acme
    first = serial(tls_host.port, ca.root)
    kept = tls_host.run("deploy", "--host", tls_host.name, env=env)
    assert kept.returncode == 0 and "asking" not in kept.stderr, kept.stderr
    assert serial(tls_host.port, ca.root) == first
    load = Load(NAME, tls_host.port, lab_secrets()["LITELLM_MASTER_KEY"], "claude-3-7-sonnet", clients=8, streams=2,
                idle=2, tls=ssl.create_default_context(cafile=str(ca.root)), stream_seconds=8).start()
    time.sleep(1)
    settings = tls_host.entry["vars"]["tls"]
    tls_host.write_inventory(tls={**settings, "acme": {**settings["acme"], "renew_before_days": 60}})
    renewed = tls_host.run("deploy", "--host", tls_host.name, env=env)
    time.sleep(1)
    load.stop()
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    # Through the running door this time: its map filled, reloaded, emptied; then only the proxy reloaded
    # for the new certificate, LiteLLM's live instance left as it was.
    assert f"ends in {VALIDITY_DAYS - 1} days; asking {ca.directory}" in renewed.stderr, renewed.stderr
    assert "reloaded the front door" in renewed.stdout and "starting" not in renewed.stderr, renewed.stderr
    # pebble's 50-day certificates are no longer than the 60 days set: the deploy says so.
    assert f"issues certificates of {VALIDITY_DAYS} days, no more than vars.tls.acme.renew_before_days (60)" in \
        renewed.stderr
    assert serial(tls_host.port, ca.root) != first
    failed = [o.error for o in load.outcomes + load.stream_outcomes if o.error]
    assert len(load.outcomes) > 50 and failed == [] and load.check_idle() == [None, None], (failed, len(load.outcomes))
    assert (tls_host.root / "litellm/proxy/acme-challenges.map").read_text() == ""
