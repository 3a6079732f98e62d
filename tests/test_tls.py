"""vars.tls's certificate checks, and litedeploy's own TLS client over a stream, against a real
TLS server (Python's ssl, OpenSSL underneath) on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from litedeploy.acme_certificate import challenges_map
from litedeploy.errors import DeployError, RenderError
from litedeploy.plan import FileChange, file_diff
from litedeploy.secrets import parse_secrets
from litedeploy.tls import TLSStream, bundle, client_context, from_file, lifetime_days, renewal_due, untrusted_only

NOW = datetime.datetime(2026, 12, 7, tzinfo=datetime.timezone.utc)
SETTINGS = {"certificate_pem": "TLS_CERTIFICATE_PEM", "private_key_pem": "TLS_PRIVATE_KEY_PEM"}
WHERE = "secrets.enc.yaml"


def pem(value) -> str:
    if isinstance(value, x509.Certificate):
        return value.public_bytes(serialization.Encoding.PEM).decode()
    return value.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()).decode()


def issue(names, issuer=None, days=(-1, 90), ca=False):
    """(certificate, key): signed by ISSUER ((certificate, key)), else self-signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "Team CA")])
    signer_cert, signer_key = issuer or (None, key)
    alternative = [x509.IPAddress(ipaddress.ip_address(name)) if name[0].isdigit() else x509.DNSName(name)
                   for name in names]
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(signer_cert.subject if signer_cert else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + datetime.timedelta(days=days[0]))
               .not_valid_after(NOW + datetime.timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if alternative:
        builder = builder.add_extension(x509.SubjectAlternativeName(alternative), critical=False)
    return builder.sign(signer_key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def ca():
    return issue([], ca=True, days=(-1, 3650))


def secrets_of(certificate, key, *chain):
    return {"TLS_CERTIFICATE_PEM": pem(certificate) + "".join(pem(more) for more in chain),
            "TLS_PRIVATE_KEY_PEM": pem(key)}


def test_a_chain_and_its_key_become_one_file_and_its_names_are_read(ca):
    certificate, key = issue(["llm.example.com", "10.0.0.5"], issuer=ca)
    text, described = bundle(secrets_of(certificate, key, ca[0]), SETTINGS, ["llm.example.com", "10.0.0.5"],
                             WHERE, [ca[0]], NOW)
    assert text == pem(certificate) + pem(ca[0]) + pem(key)
    assert described.names == ("llm.example.com", "10.0.0.5")
    assert described.issuer == "Team CA"
    assert described.days_left(NOW) == 90


@pytest.mark.parametrize("names, asked, covered", [
    (["*.example.com"], "llm.example.com", True),
    (["*.example.com"], "a.llm.example.com", False),
    (["*.example.com"], "example.com", False),
    (["LLM.example.com"], "llm.EXAMPLE.com", True),
    (["10.0.0.5"], "10.0.0.5", True),
    (["10.0.0.5"], "10.0.0.6", False),
    (["llm.example.com"], "10.0.0.5", False),
])
def test_names_are_matched_as_clients_match_them(ca, names, asked, covered):
    certificate, key = issue(names, issuer=ca)
    if covered:
        bundle(secrets_of(certificate, key), SETTINGS, [asked], WHERE, [ca[0]], NOW)
    else:
        with pytest.raises(RenderError, match=f"would be refused by a client asking for {asked} "):
            bundle(secrets_of(certificate, key), SETTINGS, [asked], WHERE, [ca[0]], NOW)


def test_an_ip_written_as_a_dns_name_is_not_an_address_to_clients(ca):
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = issue_with(key, ca, [x509.DNSName("10.0.0.5")])
    with pytest.raises(RenderError, match="asking for 10.0.0.5"):
        bundle(secrets_of(certificate, key), SETTINGS, ["10.0.0.5"], WHERE, [ca[0]], NOW)


def issue_with(key, issuer, alternative, days=(-1, 90)):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer[0].subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW + datetime.timedelta(days=days[0]))
            .not_valid_after(NOW + datetime.timedelta(days=days[1]))
            .add_extension(x509.SubjectAlternativeName(alternative), critical=False).sign(issuer[1], hashes.SHA256()))


def test_what_cannot_serve_is_refused_naming_the_secret(ca):
    certificate, key = issue(["llm.example.com"], issuer=ca)
    _, other_key = issue(["llm.example.com"], issuer=ca)
    expired, expired_key = issue(["llm.example.com"], issuer=ca, days=(-100, -10))
    intermediate = issue(["Team Intermediate"], issuer=ca, ca=True)
    behind, behind_key = issue(["llm.example.com"], issuer=intermediate)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    edwards = ed25519.Ed25519PrivateKey.generate()
    cases = [
        ({"TLS_PRIVATE_KEY_PEM": pem(key)}, "TLS_CERTIFICATE_PEM (vars.tls.certificate_pem) is not in the secrets file"),
        ({**secrets_of(certificate, key), "TLS_CERTIFICATE_PEM": "hello"}, "holds no PEM certificate"),
        ({**secrets_of(certificate, key), "TLS_PRIVATE_KEY_PEM": pem(certificate)}, "holds no unencrypted PEM private"),
        (secrets_of(certificate, other_key), "TLS_PRIVATE_KEY_PEM (vars.tls.private_key_pem) is not the private key of the first"),
        (secrets_of(ca[0], ca[1], certificate), "would be refused by a client asking for llm.example.com"),
        ({"TLS_CERTIFICATE_PEM": pem(certificate) + pem(key), "TLS_PRIVATE_KEY_PEM": pem(key)}, "holds a private key"),
        (secrets_of(expired, expired_key), "would be refused by a client asking for llm.example.com"),
        (secrets_of(behind, behind_key), "would be refused"),  # its intermediate left out
        ({**secrets_of(certificate, key), "TLS_PRIVATE_KEY_PEM": pem(weak)}, "an RSA key of 2048 bits or more"),
        ({**secrets_of(certificate, key), "TLS_PRIVATE_KEY_PEM": pem(edwards)}, "must be an ECDSA key"),
    ]
    for secrets, expected in cases:
        with pytest.raises(RenderError, match="^secrets.enc.yaml: ") as raised:
            bundle(secrets, SETTINGS, ["llm.example.com"], WHERE, [ca[0]], NOW)
        assert expected in str(raised.value)
        assert "PRIVATE KEY-----" not in str(raised.value)
    assert bundle(secrets_of(behind, behind_key, intermediate[0]), SETTINGS, ["llm.example.com"], WHERE, [ca[0]],
                  NOW)[1].issuer == "Team Intermediate"
    # Without a time (status, smoke) an expired certificate is still read.
    assert bundle(secrets_of(expired, expired_key), SETTINGS, ["llm.example.com"], WHERE, [ca[0]], None)[1].names == \
        ("llm.example.com",)


def test_a_pem_value_passes_the_secrets_file_other_line_breaks_do_not(ca):
    certificate, key = issue(["llm.example.com"], issuer=ca)
    parsed = parse_secrets(f'{{"A": {pem(certificate)!r}, "B": {pem(key)!r}}}'.replace("'", '"').replace("\n", "\\n"),
                           WHERE)
    assert parsed["A"] == pem(certificate) and parsed["B"] == pem(key)
    with pytest.raises(Exception, match="B holds a line break"):
        parse_secrets('{"B": "two\\nlines"}', WHERE)


def test_a_diff_names_the_certificate_file_and_shows_none_of_it(ca):
    certificate, key = issue(["llm.example.com"], issuer=ca)
    change = FileChange("/srv/litellm/proxy/gateway.pem", "an old key", pem(certificate) + pem(key), "0600",
                        shown=False)
    shown = file_diff(change, lambda text: text)
    assert shown.splitlines() == ["--- /srv/litellm/proxy/gateway.pem (on host)",
                                  "+++ /srv/litellm/proxy/gateway.pem (rendered: holds a private key, not shown)"]


def serve_once(context: ssl.SSLContext) -> tuple[int, threading.Thread]:
    """A TLS server on a loopback port that answers one HTTP request."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer():
        with listener:
            connection, _ = listener.accept()
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(65536)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            except (ssl.SSLError, OSError):
                connection.close()
    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


@pytest.fixture
def served(ca, tmp_path):
    certificate, key = issue(["llm.example.com", "127.0.0.1"], issuer=ca)
    text, _ = bundle(secrets_of(certificate, key, ca[0]), SETTINGS, ["llm.example.com"], WHERE, [ca[0]], NOW)
    (tmp_path / "gateway.pem").write_text(text)
    (tmp_path / "ca.pem").write_text(pem(ca[0]))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "gateway.pem")
    return context, tmp_path / "ca.pem"


def request_over(port: int, ca_file: Path | None, name: str) -> bytes:
    import http.client
    stream = TLSStream(socket.create_connection(("127.0.0.1", port), timeout=5), client_context(str(ca_file) if ca_file
                                                                                                  else None), name)
    try:
        stream.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = http.client.HTTPResponse(stream)  # type: ignore[arg-type]
        reply.begin()
        return reply.read()
    finally:
        stream.close()


def test_the_client_speaks_tls_over_a_stream_trusting_the_team_ca(served):
    context, ca_file = served
    port, thread = serve_once(context)
    assert request_over(port, ca_file, "llm.example.com") == b"ok"
    thread.join(5)


@pytest.mark.parametrize("ca_given, name, reason", [
    (False, "llm.example.com", "self-signed certificate in certificate chain"),
    (True, "other.example.com", "Hostname mismatch"),
])
def test_the_client_refuses_an_unknown_ca_or_another_name(served, ca_given, name, reason):
    context, ca_file = served
    port, thread = serve_once(context)
    with pytest.raises(ssl.SSLCertVerificationError, match=reason):
        request_over(port, ca_file if ca_given else None, name)
    thread.join(5)


def test_a_certificate_is_renewed_when_it_ends_within_the_days_set_or_no_longer_serves(ca):
    certificate, key = issue(["llm.example.com"], issuer=ca, days=(-60, 30))
    held = from_file(pem(certificate) + pem(ca[0]) + pem(key), "/srv/litellm/proxy/gateway.pem")
    assert held.text == pem(certificate) + pem(ca[0]) + pem(key)  # read back as written: no change to deploy
    assert renewal_due(held, ["llm.example.com"], [ca[0]], NOW, 29) is None
    assert renewal_due(held, ["llm.example.com"], [ca[0]], NOW, 31) == "the certificate it holds ends in 30 days"
    assert renewal_due(None, ["llm.example.com"], [ca[0]], NOW, 30) == "no certificate yet"
    for names, roots, why in ((["llm.example.com", "new.example.com"], [ca[0]], "asking for new.example.com"),
                              (["llm.example.com"], [issue([], ca=True)[0]], "would be refused")):
        said = renewal_due(held, names, roots, NOW, 1)
        assert said.startswith("the certificate it holds would not serve") and why in said
    assert renewal_due(held, ["llm.example.com"], [ca[0]], NOW + datetime.timedelta(days=31), 1).startswith(
        "the certificate it holds would not serve")  # expired


@given(st.dictionaries(st.text(max_size=30), st.text(max_size=60), min_size=1, max_size=4))
def test_the_cas_tokens_reach_haproxys_map_only_as_base64url(answers):
    safe = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)?")
    if all(safe.fullmatch(token) and safe.fullmatch(answer) for token, answer in answers.items()):
        text = challenges_map(answers)
        assert [line.split(" ") for line in text.splitlines()] == [[token, answer] for token, answer in answers.items()]
    else:
        with pytest.raises(DeployError, match="is not base64url; refused"):
            challenges_map(answers)


def test_a_certificate_refused_only_for_its_ca_is_told_apart_and_nothing_is_verified_without_a_ca(ca):
    intermediate = issue(["Team Intermediate"], issuer=ca, ca=True)
    certificate, key = issue(["llm.example.com"], issuer=intermediate, days=(-1, 89))
    pair = from_file(pem(certificate) + pem(intermediate[0]) + pem(key), "gateway.pem.pending")
    assert "key=" not in repr(pair) and "PRIVATE" not in repr(pair)
    assert lifetime_days(pair) == 90
    assert untrusted_only(pair, ["llm.example.com"], NOW)  # trusted from its own chain's top: its CA is the matter
    assert not untrusted_only(pair, ["other.example.com"], NOW)  # a name it lacks: a new one would mend it
    assert not untrusted_only(pair, ["llm.example.com"], NOW + datetime.timedelta(days=100))  # expired: likewise
    with pytest.raises(RenderError, match="this machine trusts no CA"):
        renewal_due(pair, ["llm.example.com"], [], NOW, 30)


def test_a_deploy_takes_the_certificate_the_ca_issued_before_and_never_asks_again_for_one_refused_for_its_ca(
        ca, tmp_path):
    """acme_certificate.renewal: the host's own, else one the CA issued that no deploy installed yet."""
    from types import SimpleNamespace

    from litedeploy.acme_certificate import renewal
    from litedeploy.facts import HostFacts
    from litedeploy.host import FrontDoor
    (tmp_path / "ca.pem").write_text(pem(ca[0]))
    names = ["llm.example.com"]
    host = SimpleNamespace(name="fox", vars={"server_names": names, "tls": {"acme": {}, "ca_file": str(tmp_path / "ca.pem")}})
    door = FrontDoor("haproxy:3.2", (4001, 4002), "/srv/proxy/haproxy.cfg", "/srv/proxy/gateway.pem", 80, "/srv/map")
    session = SimpleNamespace(host=host, layout=SimpleNamespace(door=door))
    old, old_key = issue(names, issuer=ca, days=(-80, 10))
    new, new_key = issue(names, issuer=ca, days=(-1, 89))
    text = {"old": pem(old) + pem(old_key), "new": pem(new) + pem(new_key)}
    held, why = renewal(session, HostFacts.of(certificate_text=text["old"]), NOW)
    assert held.text == text["old"] and why == "the certificate it holds ends in 10 days"
    assert renewal(session, HostFacts.of(certificate_text=text["old"], pending_certificate_text=text["new"]), NOW)[0].text \
        == text["new"]
    assert renewal(session, HostFacts.of(certificate_text=text["new"], pending_certificate_text=text["old"]), NOW) == \
        (from_file(text["new"], "/srv/proxy/gateway.pem"), None)
    other_ca = issue([], ca=True, days=(-1, 3650))
    intermediate = issue(["Other Intermediate"], issuer=other_ca, ca=True)
    foreign, foreign_key = issue(names, issuer=intermediate)
    with pytest.raises(RenderError, match="refused here for its CA alone; put that CA's root certificate in vars.tls.ca_file"):
        renewal(session, HostFacts.of(certificate_text=text["old"],
                                      pending_certificate_text=pem(foreign) + pem(intermediate[0]) + pem(foreign_key)), NOW)
