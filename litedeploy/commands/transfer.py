"""Bytes between this machine and the host through the task's shell: a relay to a TCP port (for
hosts whose sshd forbids tunnels) and files received from stdin (no sftp subsystem needed, and no
secret on a command line). Each command says INPUT_READY once it reads its stdin: what it is given
then is its own, and exactly that many bytes (the rest of stdin carries the shell's next commands)."""

from __future__ import annotations

from . import line

INPUT_READY = "litedeploy-input-ready"


def relay(address: str, port: int, length: int) -> list[str]:
    """One HTTP exchange with ADDRESS:PORT through bash's /dev/tcp (no nc, socat or Python needed):
    once connected it passes LENGTH bytes of its stdin (the request) and prints the answer until
    the server closes."""
    target = f"/dev/tcp/{address}/{int(port)}"
    return ["bash", "-c", f"exec 3<>{line(target)} || exit 1; echo {INPUT_READY}; "
                          f"head -c {int(length)} >&3; cat <&3"]


def pipe(address: str, port: int) -> list[str]:
    """Both ways between stdin/stdout and ADDRESS:PORT through bash's /dev/tcp, for as long as
    either side keeps it open: what a TLS handshake needs, which is no single exchange."""
    target = f"/dev/tcp/{address}/{int(port)}"
    return ["bash", "-c", f"exec 3<>{line(target)} || exit 1; cat <&3 & cat >&3; wait"]


def receive(folder: str, sizes: list[int], names: list[str] | None = None) -> list[str]:
    """A private folder (0700) holding files of the given sizes, read in turn from stdin, named
    0, 1, ... or by NAMES."""
    names = names or [str(index) for index in range(len(sizes))]
    writes = "".join(f"head -c {int(size)} > {line(f'{folder}/{name}')} && " for name, size in zip(names, sizes))
    return ["sh", "-c", f"umask 077 && mkdir -m 0700 {line(folder)} && echo {INPUT_READY} && {writes}true"]
