"""A throw-away single-node Ray cluster on 127.0.0.1, for tests and benchmarks.

:class:`LocalRayCluster` runs ``ray start --head --block`` in its own process group
(loopback only, no dashboard, its own temporary folder and a random auth token) and
stops exactly that process group on exit, so nothing outlives it::

    with LocalRayCluster(num_cpus=2) as cluster:
        subprocess.run([..., "--engine", "ray", "--address", cluster.address], env=cluster.env())
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from uvis.errors import UvisError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRayCluster:
    """``ray start --head`` on 127.0.0.1 with ``num_cpus`` CPUs (see the module docstring).

    ``hidden``: start the head, and so every worker, in a private mount namespace in
    which this folder is an empty tmpfs: the cluster cannot see what the caller writes
    there (a node without the shared storage; needs root and ``unshare``).

    Attributes:
        address: ``127.0.0.1:PORT`` for ``ray.init(address=...)`` / ``--address``.
        start_seconds: time until the head accepted connections.
    """

    def __init__(self, num_cpus: int = 2, *, startup_timeout: float = 120.0, hidden: Path | None = None) -> None:
        self.num_cpus = int(num_cpus)
        self.hidden = hidden
        self.startup_timeout = float(startup_timeout)
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.token = secrets.token_hex(16)
        self.temp_dir: Path | None = None
        self.start_seconds = 0.0
        self._proc: subprocess.Popen | None = None

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for the head and its drivers: loopback only, this cluster's token,
        no usage statistics, immediate shutdown on SIGTERM."""
        env = dict(os.environ if base is None else base)
        env.update({
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # single node: Ray then binds the loopback address
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        })
        return env

    def start(self) -> "LocalRayCluster":
        self.temp_dir = Path(tempfile.mkdtemp(prefix="uvisray", dir="/tmp"))  # short: Ray's socket paths
        ray_cli = Path(sys.executable).with_name("ray")
        cmd = [str(ray_cli), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
               "--port", str(self.port), "--num-cpus", str(self.num_cpus), "--num-gpus", "0",
               "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(self.temp_dir)]
        if self.hidden is not None:
            mount = 'mount -t tmpfs uvis-hidden "$0" && exec "$@"'
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, str(self.hidden), *cmd]
        t0 = time.perf_counter()
        log = open(self.temp_dir / "head.log", "w")
        self._proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        log.close()
        deadline = t0 + self.startup_timeout
        while time.perf_counter() < deadline:
            if self._proc.poll() is not None:
                text = (self.temp_dir / "head.log").read_text()[-2000:]
                self.stop()
                raise UvisError(f"ray start --head exited with {self._proc.returncode}: {text}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            self.stop()
            raise UvisError(f"the Ray head did not listen on {self.address} within {self.startup_timeout:g} s")
        self.start_seconds = time.perf_counter() - t0
        return self

    def stop(self) -> None:
        """Stop the head's process group (SIGTERM, then SIGKILL) and remove its folder."""
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
                self._proc.wait(timeout=30)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=30)
            try:  # children that outlived the head (same process group)
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc = None
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None

    def __enter__(self) -> "LocalRayCluster":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
