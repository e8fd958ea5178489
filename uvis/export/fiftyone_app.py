"""Launch and stop the FiftyOne App on a dataset, from a script or a long-running app.

The App server runs as FiftyOne's own server service (a child process watched by
FiftyOne's service runner, so it also ends when this process exits); no ``Session``
is created, so nothing is kept in module state. The dataset opens at
``http://<address>:<port>/datasets/<name>``.

    handle = launch_app("my-dataset")          # 127.0.0.1:5151
    print(handle.url)
    handle.stop()                              # or stop_app(handle)
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from uvis.errors import BadInputError, UvisError, require


@dataclass
class AppHandle:
    """A running FiftyOne App server.

    Attributes:
        url: the dataset's page.
        address, port: where the server listens.
        dataset: the dataset name.
        owned: True if this handle started the server (``stop`` ends it); False if an
            App server of the same FiftyOne version was already running there (left running).
    """

    url: str
    address: str
    port: int
    dataset: str
    owned: bool = True
    _service: Any = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        """True while the server answers on its port."""
        return _fiftyone_version(self.address, self.port) is not None

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server if this handle started it (idempotent)."""
        service, self._service = self._service, None
        if service is None:
            return
        try:
            service.stop()
        except Exception:  # pragma: no cover - the child may already be gone
            pass
        child = getattr(service, "child", None)
        deadline = time.monotonic() + timeout
        while child is not None and time.monotonic() < deadline:
            try:
                if not child.is_running() or child.status() == "zombie":
                    break
            except Exception:
                break
            time.sleep(0.1)
        # the service runner stops the server when its stdin closes; make sure the port is free
        while _fiftyone_version(self.address, self.port) is not None and time.monotonic() < deadline:
            time.sleep(0.2)


def _fiftyone_version(address: str, port: int) -> str | None:
    """The FiftyOne version served at address:port, or None if no FiftyOne server answers."""
    import requests

    try:
        resp = requests.get(f"http://{address}:{port}/fiftyone", timeout=2)
        return str(resp.json()["version"]) if resp.ok else None
    except Exception:
        return None


def _port_in_use(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((address, port)) == 0


def launch_app(dataset_name: str, *, port: int = 5151, address: str = "127.0.0.1",
               timeout: float = 90.0) -> AppHandle:
    """Start the FiftyOne App server and return a handle whose ``url`` opens the dataset.

    Args:
        dataset_name: an existing FiftyOne dataset.
        port, address: where to serve (default 127.0.0.1:5151, local only).
        timeout: seconds to wait for the server to answer.

    Raises:
        BadInputError: no such dataset, or the port is taken by something else.
        UvisError: the server did not start in time.
        MissingDependencyError: fiftyone is not installed.
    """
    fo = require("fiftyone", "pip install fiftyone")
    import fiftyone.core.service as fos

    from uvis.export.fiftyone_export import cleanup_temporaries

    cleanup_temporaries(dataset_name)  # a killed overwrite's dataset is restored before it is shown
    if not fo.dataset_exists(dataset_name):
        raise BadInputError(f"FiftyOne dataset '{dataset_name}' does not exist; export to it first")
    url = f"http://{address}:{port}/datasets/{quote(dataset_name, safe='')}"
    running = _fiftyone_version(address, port)
    if running is not None:
        if running != fo.constants.VERSION:
            raise BadInputError(f"a FiftyOne {running} App already runs on {address}:{port} (this is "
                                f"{fo.constants.VERSION}); stop it or choose another port")
        return AppHandle(url, address, port, dataset_name, owned=False)
    if _port_in_use(address, port):
        raise BadInputError(f"port {port} on {address} is in use by another program; choose another port")
    try:
        service = fos.ServerService(port, address=address, do_not_track=fo.config.do_not_track)
    except Exception as exc:
        raise UvisError(f"the FiftyOne App server did not start on {address}:{port}: {exc}") from exc
    handle = AppHandle(url, address, port, dataset_name, owned=True, _service=service)
    deadline = time.monotonic() + timeout
    while _fiftyone_version(address, port) is None:
        if time.monotonic() > deadline:
            handle.stop()
            raise UvisError(f"the FiftyOne App server did not answer on {address}:{port} within {timeout:.0f} s")
        time.sleep(0.25)
    return handle


def stop_app(handle: AppHandle) -> None:
    """Stop an App server started by :func:`launch_app` (idempotent)."""
    handle.stop()
