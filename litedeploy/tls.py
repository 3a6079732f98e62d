"""HTTPS at the front door: the certificate and key a host's `vars.tls` names in the secrets file,
checked before anything is written (pure), and the client side litedeploy's own requests take.

The server side follows Mozilla's "intermediate" profile (ssl-config.mozilla.org/guidelines/6.0.json:
TLS 1.2 and 1.3, ECDHE key exchange with AEAD ciphers, no session tickets); haproxy.cfg.j2 words it.
`TLSStream` runs TLS over any stream the task has to the host's port (an SSH channel, a relay):
`ssl.SSLObject` with memory buffers, since Python's `wrap_socket` takes only real sockets.
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import os
import ssl
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError

from .errors import RenderError, VerifyError
from .shapes import ip_address

# vars.tls's keys: the secrets file's names of the PEM certificate chain (the server's first) and of
# its private key, as Kamal's proxy names them (kamal-deploy.org/docs/configuration/proxy, ssl);
# and the CA certificate the team's clients trust, where it is the team's own (a local file).
SECRET_KEYS = ("certificate_pem", "private_key_pem")
# Or `acme`: the certificate comes from an ACME CA (litedeploy/acme_certificate.py), as Kamal's
# proxy and Caddy get theirs; its settings, as Ansible's acme_certificate module and certbot call
# them: the CA's directory URL, the account's email, the port the CA's HTTP-01 request arrives on,
# and how many days before the end a deploy asks for a new one.
TLS_KEYS = (*SECRET_KEYS, "ca_file", "acme")
ACME_KEYS = ("directory", "email", "http_port", "renew_before_days")
# Let's Encrypt's production directory (letsencrypt.org/docs/client-options).
DEFAULT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
# HTTP-01: the CA asks http://NAME/.well-known/acme-challenge/TOKEN on port 80 (RFC 8555, 8.3).
DEFAULT_HTTP_PORT = 80
# certbot's renew_before_expiry: 30 days of a 90-day certificate, when Let's Encrypt's renewal
# information would have it renewed too (letsencrypt.org/docs/integration-guide).
DEFAULT_RENEW_BEFORE_DAYS = 30
# The door's certificate and key in one file, as HAProxy's `crt` reads it (0600, root's).
BUNDLE_NAME = "gateway.pem"
# With `acme`: the HTTP-01 answers the door serves (an HAProxy map, TOKEN KEY_AUTHORIZATION a line),
# empty but while a certificate is asked for.
CHALLENGES_NAME = "acme-challenges.map"
# Fewer days left than this and ops.smoke fails: a week is what an admin needs to act on it.
URGENT_DAYS = 7


def acme_settings(settings: Any) -> dict[str, Any] | None:
    """vars.tls.acme with its defaults (ACME_KEYS), or None where the certificate is the admin's own
    (or vars.tls is not a mapping: the settings check names it)."""
    if not isinstance(settings, dict) or "acme" not in settings:
        return None
    given = settings["acme"] if isinstance(settings["acme"], dict) else {}
    return {"directory": DEFAULT_DIRECTORY, "email": None, "http_port": DEFAULT_HTTP_PORT,
            "renew_before_days": DEFAULT_RENEW_BEFORE_DAYS, **given}


@dataclass(frozen=True)
class Certificate:
    """What an admin checks of a server certificate: NAMES (its DNS names and IP addresses), ISSUER
    (the issuer's common name, else its whole name), NOT_AFTER (UTC)."""

    names: tuple[str, ...]
    issuer: str
    not_after: datetime.datetime

    def days_left(self, now: datetime.datetime) -> int:
        return (self.not_after - now).days


def described(certificate: x509.Certificate) -> Certificate:
    try:
        alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = (*alternative.get_values_for_type(x509.DNSName),
                 *(str(address) for address in alternative.get_values_for_type(x509.IPAddress)))
    except x509.ExtensionNotFound:
        names = ()
    common = certificate.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    issuer = str(common[0].value) if common else certificate.issuer.rfc4514_string()
    return Certificate(tuple(names), issuer, certificate.not_valid_after_utc)


def of_bundle(text: str) -> Certificate:
    """The server's certificate of a `crt` file (KeyPair.text), read. Raises ValueError for one
    that holds none."""
    return described(x509.load_pem_x509_certificate(from_file(text, "").chain.encode()))


def from_der(der: bytes) -> Certificate:
    """A certificate as a TLS handshake gave it (`ssl.SSLObject.getpeercert(binary_form=True)`)."""
    return described(x509.load_der_x509_certificate(der))


def trusted(ca_file: str | None, where: str) -> list[x509.Certificate]:
    """The CAs a client trusts: the system's (Python's default verify file, as `ssl` loads it), and
    CA_FILE (vars.tls.ca_file), which must hold a PEM certificate. Raises RenderError naming it."""
    system = ssl.get_default_verify_paths().cafile
    with warnings.catch_warnings():  # a system root that today's cryptography finds odd (a serial of 0) still counts
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        roots = x509.load_pem_x509_certificates(Path(system).read_bytes()) if system else []
    if ca_file is None:
        return roots
    try:
        return [*roots, *x509.load_pem_x509_certificates(Path(ca_file).read_bytes())]
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it holds no PEM certificate"
        raise RenderError(f"{where}: vars.tls.ca_file {ca_file}: {reason}") from None


@dataclass(frozen=True)
class KeyPair:
    """A certificate chain (PEM, the server's certificate first) and its private key (PEM), each
    ending in one newline, with what an error calls each (a secrets file's key, an issued file)."""

    chain: str
    key: str = field(repr=False)
    chain_label: str = ""
    key_label: str = ""

    @property
    def text(self) -> str:
        """HAProxy's `crt` file: the chain, then the key."""
        return self.chain + self.key


def from_secrets(secrets: Mapping[str, str], settings: Mapping[str, str], where: str) -> KeyPair:
    """The pair SETTINGS (vars.tls) names in the secrets file (WHERE). Raises RenderError naming the
    key that is missing."""
    values = {}
    for key in SECRET_KEYS:
        name = settings[key]
        if not secrets.get(name):
            raise RenderError(f"{where}: {name} (vars.tls.{key}) is not in the secrets file; add the PEM text "
                              f"with `sops {os.path.basename(where)}`")
        values[key] = pem(secrets[name])
    return KeyPair(values["certificate_pem"], values["private_key_pem"],
                   f"{settings['certificate_pem']} (vars.tls.certificate_pem)",
                   f"{settings['private_key_pem']} (vars.tls.private_key_pem)")


def from_file(text: str, label: str) -> KeyPair:
    """The pair in a `crt` file (KeyPair.text) as the host holds it (LABEL: its path)."""
    start = text.find("-----BEGIN", text.rfind("-----END CERTIFICATE-----"))
    start = len(text) if start < 0 else start
    return KeyPair(pem(text[:start]), pem(text[start:]), label, f"the key in {label}")


def pem(text: str) -> str:
    """PEM text with Unix line ends, ending in one newline."""
    return text.replace("\r\n", "\n").strip() + "\n"


def bundle(secrets: Mapping[str, str], settings: Mapping[str, str], names: Sequence[str], where: str,
           roots: list[x509.Certificate], now: datetime.datetime | None) -> tuple[str, Certificate]:
    """HAProxy's `crt` file for SETTINGS (vars.tls), from the secrets file (WHERE), and its
    certificate, checked as `checked` checks it."""
    return checked(from_secrets(secrets, settings, where), names, where, roots, now)


def checked(pair: KeyPair, names: Sequence[str], where: str, roots: list[x509.Certificate],
            now: datetime.datetime | None) -> tuple[str, Certificate]:
    """HAProxy's `crt` file for PAIR, and its certificate. The chain is verified as a client
    verifies it (cryptography's X.509 verification, RFC 5280 and the CA/Browser Forum's rules: its
    path to one of ROOTS, `trusted`, each name of NAMES, vars.server_names, and the dates at NOW;
    without NOW it is read, not verified: status and smoke still read one that expired).
    Raises RenderError, naming the pair's labels (WHERE: their file), for text that is no PEM
    certificate or unencrypted key, a key that is not the certificate's or that Mozilla's
    intermediate profile does not serve (ECDSA, or RSA of 2048 bits or more), or a chain a client
    would refuse."""
    chain_name, key_name = pair.chain_label, pair.key_label
    try:
        chain = x509.load_pem_x509_certificates(pair.chain.encode())
    except ValueError:
        raise RenderError(f"{where}: {chain_name} holds no PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    try:
        private_key = serialization.load_pem_private_key(pair.key.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise RenderError(f"{where}: {key_name} holds no unencrypted PEM private key "
                          "(HAProxy cannot ask for a passphrase)") from None
    if not isinstance(private_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)) or \
            (isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size < 2048):
        raise RenderError(f"{where}: {key_name} must be an ECDSA key or an RSA key of 2048 bits or more "
                          "(Mozilla's intermediate profile)")
    leaf = chain[0]
    if private_key.public_key().public_bytes(*_SPKI) != leaf.public_key().public_bytes(*_SPKI):
        raise RenderError(f"{where}: {key_name} is not the private key of the first certificate in {chain_name} "
                          "(the server's must come first, then the intermediates)")
    if "PRIVATE KEY" in pair.chain:
        raise RenderError(f"{where}: {chain_name} holds a private key too; keep it in {key_name} alone")
    try:
        certificate = described(leaf)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as error:
        raise RenderError(f"{where}: {chain_name}: its names cannot be read ({error})") from None
    if now is not None:
        _verify(chain, names, roots, now, f"{where}: {chain_name} (for {', '.join(certificate.names) or 'no name'}, "
                                          f"until {leaf.not_valid_after_utc:%Y-%m-%d})")
    return pair.text, certificate


def renewal_due(pair: KeyPair | None, names: Sequence[str], roots: list[x509.Certificate], now: datetime.datetime,
                before_days: int) -> str | None:
    """Why the door needs a new certificate from its ACME CA, or None where PAIR (the one the host
    holds, None: none) serves NAMES to clients (`checked` at NOW) for more than BEFORE_DAYS.
    Raises RenderError where no certificate could be verified here (no CA trusted at all)."""
    if pair is None:
        return "no certificate yet"
    if not roots:
        raise RenderError("this machine trusts no CA (no system CA file, no vars.tls.ca_file): no certificate "
                          "can be verified, so none is asked for")
    try:
        _, certificate = checked(pair, names, "", roots, now)
    except RenderError as error:
        return f"the certificate it holds would not serve ({str(error).split(': ', 1)[-1]})"
    left = certificate.days_left(now)
    return f"the certificate it holds ends in {left} days" if left < before_days else None


def untrusted_only(pair: KeyPair, names: Sequence[str], now: datetime.datetime) -> bool:
    """Whether PAIR would serve NAMES at NOW to a client that trusted the top of its own chain: what
    keeps it from serving is only its CA, which no new certificate from that CA mends."""
    try:
        chain = x509.load_pem_x509_certificates(pair.chain.encode())
        if len(chain) < 2:
            return False
        checked(pair, names, "", [chain[-1]], now)
    except (ValueError, RenderError):
        return False
    return True


def lifetime_days(pair: KeyPair) -> int:
    """The whole life of PAIR's certificate, in days, rounded (a CA's "90 days" may end a second early)."""
    leaf = x509.load_pem_x509_certificate(pair.chain.encode())
    return round((leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() / 86400)


def _verify(chain: list[x509.Certificate], names: Sequence[str], roots: list[x509.Certificate],
            now: datetime.datetime, what: str) -> None:
    """The path, signatures, dates and names as every client checks them; of the extensions only that
    a CA says it is one and the server names its names (clients read no common name), as OpenSSL's
    clients check: a team CA made without key identifiers works for them, the Web PKI's stricter
    rules would refuse it."""
    if not roots:  # cryptography's Store takes none
        raise RenderError(f"{what} cannot be verified: this machine trusts no CA (no system CA file, no vars.tls.ca_file)")
    ca_policy = ExtensionPolicy.permit_all().require_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
    ee_policy = ExtensionPolicy.permit_all().require_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    policy = PolicyBuilder().store(Store(roots)).time(now.replace(tzinfo=None)) \
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
    for name in names:
        subject = x509.IPAddress(ipaddress.ip_address(name)) if ip_address(name) else x509.DNSName(name)
        try:
            policy.build_server_verifier(subject).verify(chain[0], chain[1:])
        except VerificationError as error:
            raise RenderError(f"{what} would be refused by a client asking for {name} (vars.server_names): "
                              f"{error}") from None


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def client_context(ca_file: str | None) -> ssl.SSLContext:
    """What litedeploy's own requests to the door trust: the system's CAs, and CA_FILE (vars.tls.ca_file,
    the team's own CA) where set; the name and the expiry are checked, as every client checks them.
    Raises VerifyError for a CA_FILE that cannot be read as PEM certificates."""
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as error:
            raise VerifyError(f"vars.tls.ca_file {ca_file}: {error.strerror or 'it holds no PEM certificate'}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


class TLSStream:
    """TLS over STREAM (anything with sendall, recv and settimeout), as a socket offers it to
    http.client: sendall, recv, makefile, settimeout, close. The handshake runs in the constructor;
    ssl.SSLError (ssl.SSLCertVerificationError among them) says why it failed."""

    def __init__(self, stream: Any, context: ssl.SSLContext, server_name: str) -> None:
        self.stream = stream
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=server_name)
        self._until_done(self.tls.do_handshake)

    def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self.stream.sendall(pending)

    def _until_done(self, operation: Any, *args: Any) -> Any:
        while True:
            try:
                result = operation(*args)
            except ssl.SSLWantReadError:
                self._flush()
                data = self.stream.recv(65536)
                if not data:
                    self.incoming.write_eof()
                else:
                    self.incoming.write(data)
                continue
            self._flush()
            return result

    def certificate(self) -> Certificate:
        """The server's certificate, as the handshake verified it."""
        return from_der(self.tls.getpeercert(binary_form=True) or b"")

    def settimeout(self, timeout: float) -> None:
        self.stream.settimeout(timeout)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._until_done(self.tls.write, view)
            view = view[written:]

    def recv(self, size: int) -> bytes:
        try:
            return self._until_done(self.tls.read, size)
        except ssl.SSLZeroReturnError:
            return b""
        except ssl.SSLEOFError:  # a server that closes without close_notify: the end of its answer
            return b""

    def makefile(self, *_mode: Any) -> io.BufferedReader:
        return io.BufferedReader(_Raw(self))

    def close(self) -> None:
        self.stream.close()


class _Raw(io.RawIOBase):
    """A TLSStream's answer as the file http.client.HTTPResponse reads it through."""

    def __init__(self, stream: TLSStream) -> None:
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.stream.recv(len(buffer))
        buffer[:len(data)] = data
        return len(data)
