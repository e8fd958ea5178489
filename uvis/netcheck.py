"""Fast answers to "may we use the network?" so model loading never hangs offline.

Hub clients (huggingface_hub, urllib) retry for tens of seconds when the network is
down. Code that downloads weights first asks :func:`is_offline`, which honours the
explicit switches (``UVIS_OFFLINE``, ``HF_HUB_OFFLINE``) and otherwise opens one
certificate-verified TLS connection to the hub with a short deadline (DNS lookup
included). Nothing is cached between calls: each call re-checks (at most ``timeout``
seconds).
"""
from __future__ import annotations

import base64
import os
import socket
import ssl
import threading
from urllib.parse import unquote, urlsplit

OFFLINE_ENV_VARS: tuple[str, ...] = ("UVIS_OFFLINE", "HF_HUB_OFFLINE")
DEFAULT_HOST = "huggingface.co"
DEFAULT_TIMEOUT = 1.5

_TRUE = {"1", "true", "yes", "on"}


def offline_requested() -> str | None:
    """Name of the environment variable that requests offline mode (``UVIS_OFFLINE=1`` or
    ``HF_HUB_OFFLINE=1``, also ``true``/``yes``/``on``), or None when none does."""
    for var in OFFLINE_ENV_VARS:
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return var
    return None


def _proxy_for(host: str) -> tuple[str, int, str | None] | None:
    """The HTTPS proxy a connection to ``host`` goes through: (host, port, basic-auth
    header value or None), or None for a direct connection."""
    no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    if any(entry.strip() and host.endswith(entry.strip().lstrip(".")) for entry in no_proxy.split(",")):
        return None
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if not proxy:
        return None
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not parts.hostname:
        return None
    auth = None
    if parts.username:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        auth = "Basic " + base64.b64encode(token).decode("ascii")
    return parts.hostname, parts.port or 3128, auth


def _open(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to ``host:port``, tunnelled through the HTTPS proxy if one is set."""
    proxy = _proxy_for(host)
    if proxy is None:
        return socket.create_connection((host, port), timeout=timeout)
    sock = socket.create_connection(proxy[:2], timeout=timeout)
    request = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if proxy[2]:
        request += f"Proxy-Authorization: {proxy[2]}\r\n"
    sock.sendall((request + "\r\n").encode("ascii"))
    reply = b""
    while b"\r\n\r\n" not in reply and len(reply) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    status = reply.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        sock.close()
        raise OSError(f"proxy refused CONNECT {host}:{port}: {reply[:80]!r}")
    return sock


def network_reachable(
    host: str = DEFAULT_HOST, port: int = 443, timeout: float = DEFAULT_TIMEOUT, *, tls: bool = True
) -> bool:
    """True iff ``host:port`` answers within ``timeout`` seconds, everything included
    (DNS lookup, HTTPS proxy CONNECT, and with ``tls`` a certificate-verified TLS
    handshake, which also rejects firewalls that accept every TCP connection).

    The attempt runs in a daemon thread so a hanging DNS lookup cannot block the
    caller beyond ``timeout``.
    """
    result: list[bool] = []

    def attempt() -> None:
        try:
            with _open(host, port, timeout) as sock:
                if tls:
                    with ssl.create_default_context().wrap_socket(sock, server_hostname=host):
                        pass
            result.append(True)
        except (OSError, ValueError):
            result.append(False)

    worker = threading.Thread(target=attempt, name="uvis-netcheck", daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def is_offline(host: str = DEFAULT_HOST, port: int = 443, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """Why downloads must not be attempted, or None when the network can be used.

    Returns a short human-readable reason (e.g. ``"HF_HUB_OFFLINE=1 is set"`` or
    ``"huggingface.co:443 is unreachable (no verified TLS connection within 1.5 s)"``).
    """
    var = offline_requested()
    if var:
        return f"{var}={os.environ[var]} is set"
    if not network_reachable(host, port, timeout):
        return f"{host}:{port} is unreachable (no verified TLS connection within {timeout:g} s)"
    return None
