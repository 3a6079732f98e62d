"""A real ACME CA on loopback for the lab's tests: Let's Encrypt's test server (Debian's `pebble`)
with its DNS test server (`pebble-challtestsrv`) answering every name with 127.0.0.1, so the CA
checks the HTTP-01 answers on the lab's loopback for real, with no VA_ALWAYS_VALID (LAB-NOTES,
"A real ACME CA on loopback")."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import team_ca


@dataclass(frozen=True)
class AcmeCA:
    """DIRECTORY, the ACME directory URL; ROOT, pebble's root certificate (new at every start), which
    the gateway's clients trust (vars.tls.ca_file); LISTENER_CA, what this machine trusts pebble's
    own HTTPS by (REQUESTS_CA_BUNDLE for litedeploy's ACME client)."""

    directory: str
    root: Path
    listener_ca: Path


@contextmanager
def running(folder: Path, http_port: int, free_port: Callable[[], int], validity_days: int) -> Iterator[AcmeCA]:
    """pebble and its DNS server in FOLDER, checking HTTP-01 answers on 127.0.0.1:HTTP_PORT and issuing
    certificates of VALIDITY_DAYS; stopped on leaving."""
    team_ca.issue(folder, ("127.0.0.1",))  # pebble's own HTTPS listener (the package ships no certificate)
    listen, management, dns, dns_management = (free_port() for _ in range(4))
    (folder / "pebble.json").write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{listen}", "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": str(folder / "gw.crt"), "privateKey": str(folder / "gw.key"),
        "httpPort": http_port, "tlsPort": free_port(), "ocspResponderURL": "",
        "externalAccountBindingRequired": False, "certificateValidityPeriod": validity_days * 86400}}))
    # No random waits, and no nonce refused on purpose (pebble refuses 5% to test clients' retries).
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    with open(folder / "pebble.log", "ab") as log:
        processes = [
            subprocess.Popen(["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                              "-dns01", f"127.0.0.1:{dns}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                              "-management", f"127.0.0.1:{dns_management}"],
                             stdout=log, stderr=log, stdin=subprocess.DEVNULL),
            subprocess.Popen(["pebble", "-config", str(folder / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns}"],
                             stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)]
    try:
        context = ssl.create_default_context(cafile=str(folder / "ca.pem"))
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{management}/roots/0", context=context,
                                            timeout=5) as answer:
                    (folder / "acme-root.pem").write_bytes(answer.read())
                break
            except OSError:
                if time.monotonic() > deadline or any(process.poll() is not None for process in processes):
                    raise AssertionError(f"pebble did not start: {(folder / 'pebble.log').read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield AcmeCA(f"https://127.0.0.1:{listen}/dir", folder / "acme-root.pem", folder / "ca.pem")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
