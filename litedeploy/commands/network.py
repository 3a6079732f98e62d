"""What listens on a port, and a relay to a port for hosts whose sshd forbids tunnels."""

from __future__ import annotations

from . import line, script

# Printed by the relay once it holds the TCP connection: the request may be sent.
RELAY_READY = "litedeploy-relay-ready"


def port_holder(port: int) -> str:
    """Prints `port_holder container NAME` or `port_holder process COMMAND (pid N)` for whatever
    listens on the gateway's port: a published port through Docker, else the listening process
    (whose cgroup names its container, if it runs in one)."""
    port = int(port)
    return script(
        f"h=$(docker ps --filter publish={port} --format '{{{{.Names}}}}' 2>/dev/null | head -n 1)",
        "if [ -n \"$h\" ]; then echo \"port_holder container $h\";",
        f"elif pid=$(ss -Hltnp 'sport = :{port}' 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)"
        " && [ -n \"$pid\" ]; then",
        "  cid=$(grep -o -E '[0-9a-f]{64}' /proc/$pid/cgroup 2>/dev/null | head -n 1)",
        "  name=$([ -n \"$cid\" ] && docker inspect --format '{{.Name}}' \"$cid\" 2>/dev/null | tr -d /)",
        "  if [ -n \"$name\" ]; then echo \"port_holder container $name\";",
        "  else echo \"port_holder process $(cat /proc/$pid/comm 2>/dev/null) (pid $pid)\"; fi",
        "fi",
        "true",
    )


def relay(address: str, port: int, length: int) -> list[str]:
    """One HTTP exchange with ADDRESS:PORT through bash's /dev/tcp (no nc, socat or Python needed):
    once connected it says RELAY_READY, passes exactly LENGTH bytes of its stdin (the request; the
    rest of stdin is not its own) and prints the answer until the server closes."""
    target = f"/dev/tcp/{address}/{int(port)}"
    return ["bash", "-c", f"exec 3<>{line(target)} || exit 1; echo {RELAY_READY}; "
                          f"head -c {int(length)} >&3; cat <&3"]
