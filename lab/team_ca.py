"""What the lab's HTTPS tests and benchmarks need: a team's own CA made with openssl, a server
certificate from it, and a secrets file holding them that the lab's age key decrypts (the real
sops binary)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def issue(folder: Path, names: tuple[str, ...], days: int = 29) -> None:
    """In FOLDER: ca.pem and ca.key (the team's CA, 30 days), and signed by it gw.crt and gw.key for
    NAMES (addresses or host names), DAYS valid; then other.key, a key of no certificate. A
    second call signs a new gw.crt for gw.key: a renewed certificate."""
    if not (folder / "ca.pem").exists():
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=Lab Team CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=folder)
        for name in ("gw", "other"):
            openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                    f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={names[0]}", cwd=folder)
    alternative = ",".join(f"IP:{name}" if name[0].isdigit() else f"DNS:{name}" for name in names)
    (folder / "ext").write_text(f"subjectAltName={alternative}\nbasicConstraints=CA:FALSE\n"
                                "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "gw.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days",
            str(days), "-out", "gw.crt", "-extfile", "ext", cwd=folder)


def encrypt_for_lab(values: dict, path: Path) -> Path:
    """A secrets file the lab key decrypts, made with the real sops binary."""
    recipient = next(line.split(": ")[1].strip() for line in (REPO / "lab/age-key.lab.txt").read_text().splitlines()
                     if line.startswith("# public key:"))
    path.write_text(yaml.safe_dump(values))
    # From the file's own folder: the repo's .sops.yaml has no rule for a path outside it.
    subprocess.run(["sops", "--encrypt", "--in-place", "--age", recipient, path.name], check=True,
                   capture_output=True, cwd=path.parent)
    return path
