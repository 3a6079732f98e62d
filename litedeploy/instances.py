"""Zero-downtime changes (`vars.zero_downtime`), the pure part: the two gateway instances, blue and
green, that take turns behind a reverse proxy holding the host's port, and which one is live.

This is the blue-green deployment of Kamal's proxy and of Helm's rolling update, on one host: a
change starts the idle instance with the new files on its own loopback port, and the proxy is
switched to it only once it answers; the instance that was live finishes what it holds, then stops.
HAProxy is the proxy (Debian's package, or the official `haproxy` image): its configuration file
names the live instance, so that file is the one record of which instance serves, and a reload
(SIGUSR2 to its master process) hands the listening socket to a new worker without closing it,
while the old worker finishes the requests it holds (docs.haproxy.org/2.6/management.html, 4 and 5).
"""

from __future__ import annotations

import posixpath
import re

from .host import Host

COLORS = ("blue", "green")
# The proxy where vars.proxy_image names none: the official image's LTS branch (hub.docker.com/_/haproxy,
# 3.2 is the long-term-support release of 2025, maintained to 2030).
DEFAULT_PROXY_IMAGE = "haproxy:3.2"
# The header the proxy adds to every answer: which instance gave it (a switch waits for it to change).
INSTANCE_HEADER = "X-Litedeploy-Instance"
# Where the official image reads its configuration; the proxy's folder on the host is mounted there.
PROXY_CONFIG_DIR = "/usr/local/etc/haproxy"
_LIVE_SERVER = re.compile(r"^\s*server (blue|green) ", re.MULTILINE)


def enabled(host: Host) -> bool:
    return bool(host.vars.get("zero_downtime"))


def proxy_image(host: Host) -> str:
    """The proxy's image as hosts.yaml names it (vars.proxy_image), by default DEFAULT_PROXY_IMAGE."""
    return str(host.vars.get("proxy_image") or DEFAULT_PROXY_IMAGE)


def ports(host: Host) -> tuple[int, int]:
    """The loopback ports of blue and green: vars.instance_ports, by default the two after the host's."""
    chosen = host.vars.get("instance_ports") or (host.port + 1, host.port + 2)
    return int(chosen[0]), int(chosen[1])


def instance(host: Host, color: str) -> Host:
    """The host as one instance sees it: its own container, compose service and loopback port, the
    rest (image, files, settings) the host's own."""
    return _renamed(host, color).with_settings(service_name=f"{host.service_name}-{color}",
                   port=ports(host)[COLORS.index(color)], bind="127.0.0.1")


def proxy(host: Host) -> Host:
    """The host as its proxy sees it (the container and compose service that hold the port)."""
    return _renamed(host, "proxy").with_settings(service_name=f"{host.service_name}-proxy")


def _renamed(host: Host, suffix: str) -> Host:
    container = getattr(host.runtime_settings, "container_name", None)
    return host.with_settings(container_name=f"{container}-{suffix}") if container else host


def proxy_config_path(host: Host) -> str:
    return posixpath.join(host.config_dir, "proxy", "haproxy.cfg")


def live_color(proxy_text: str | None) -> str | None:
    """The instance the proxy's configuration forwards to, or None (no proxy configured yet)."""
    found = _LIVE_SERVER.search(proxy_text or "")
    return found.group(1) if found else None


def other(color: str | None) -> str:
    """The instance a change starts: the one not live (blue where none is)."""
    return "green" if color == "blue" else "blue"
