"""Fast answers to "may we use the network?" so model loading never hangs offline.

Hub clients (huggingface_hub, urllib) retry for tens of seconds when the network is
down. Code that downloads weights first asks :func:`is_offline`, which honours the
explicit switches (``UVIS_OFFLINE``, ``HF_HUB_OFFLINE``) and otherwise opens one TCP
connection with a short deadline (DNS lookup included). Nothing is cached between
calls: each call re-checks (at most ``timeout`` seconds).
"""
from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlsplit

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


def _proxy_for(host: str, port: int) -> tuple[str, int]:
    """The (host, port) a connection to ``host`` really goes to: the HTTPS proxy if set."""
    no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    if any(entry.strip() and host.endswith(entry.strip().lstrip(".")) for entry in no_proxy.split(",")):
        return host, port
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parts.hostname:
            return parts.hostname, parts.port or 3128
    return host, port


def network_reachable(host: str = DEFAULT_HOST, port: int = 443, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """True iff a TCP connection to ``host:port`` (or the configured HTTPS proxy) opens
    within ``timeout`` seconds, name resolution included.

    The connection attempt runs in a daemon thread so a hanging DNS lookup cannot block
    the caller beyond ``timeout``.
    """
    target = _proxy_for(host, port)
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection(target, timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=attempt, name="uvis-netcheck", daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def is_offline(host: str = DEFAULT_HOST, port: int = 443, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """Why downloads must not be attempted, or None when the network can be used.

    Returns a short human-readable reason (e.g. ``"HF_HUB_OFFLINE=1 is set"`` or
    ``"huggingface.co:443 is unreachable (checked with a 1.5 s timeout)"``).
    """
    var = offline_requested()
    if var:
        return f"{var}={os.environ[var]} is set"
    if not network_reachable(host, port, timeout):
        return f"{host}:{port} is unreachable (checked with a {timeout:g} s timeout)"
    return None
