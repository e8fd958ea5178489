"""The weights manager against a real HTTP server on 127.0.0.1 (Range support, dropped connections)."""
from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from uvis import weights, weights_cli
from uvis.errors import BadInputError, MissingWeightsError
from uvis.weights import ChecksumMismatchError, WeightsEntry

PAYLOAD = bytes(range(256)) * 1024 + b"tail"  # 256 KiB + 4 bytes
CHUNK = 1000  # download write size in these tests (bytes read but not yet written are lost on a drop)


@dataclass
class ServerState:
    """What the handler serves and how it misbehaves; what it saw."""

    payload: bytes = PAYLOAD
    drop_first_after: int | None = None  # first full-file response stops after this many bytes
    drop_every_after: int | None = None  # every response stops after this many bytes
    ignore_range: bool = False  # answer 200 with the whole file, as servers without Range support do
    ranges: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            data = state.payload
            header = self.headers.get("Range")
            with state.lock:
                state.ranges.append(header)
                first = len(state.ranges) == 1
            start = 0
            if header and not state.ignore_range:
                start = int(header.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            limit = state.drop_every_after if state.drop_every_after is not None else (
                state.drop_first_after if first else None)
            if limit is not None and limit < len(body):
                self.wfile.write(body[:limit])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)  # drop the connection mid-file
                return
            self.wfile.write(body)

    return Handler


@dataclass
class Server:
    url: str
    state: ServerState
    httpd: ThreadingHTTPServer


@pytest.fixture
def server() -> Iterator[Server]:
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(url=f"http://127.0.0.1:{httpd.server_address[1]}/files/tiny.bin", state=state, httpd=httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("UVIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("UVIS_OFFLINE", raising=False)
    monkeypatch.setattr(weights, "DOWNLOAD_CHUNK_BYTES", CHUNK)
    return tmp_path / "cache" / "weights"


def entry_for(server: Server, sha256: str | None = hashlib.sha256(PAYLOAD).hexdigest()) -> WeightsEntry:
    return WeightsEntry(name="tiny", url=server.url, filename="tiny.bin", size=len(PAYLOAD), license="test",
                        sha256=sha256)


def test_fresh_download(server: Server, cache: Path) -> None:
    path = weights.resolve(entry_for(server), progress=False)
    assert path == cache / "tiny.bin"
    assert path.read_bytes() == PAYLOAD
    assert not (cache / "tiny.bin.part").exists()
    assert server.state.ranges == [None]
    # a second resolve verifies the cached file without the network
    server.httpd.shutdown()
    assert weights.resolve(entry_for(server), progress=False) == path


def test_unknown_hash_is_recorded_then_enforced(server: Server, cache: Path) -> None:
    entry = entry_for(server, sha256=None)
    path, digest = weights.resolve_with_digest(entry, progress=False)
    assert digest == hashlib.sha256(PAYLOAD).hexdigest()
    record = json.loads((cache / weights.HASHES_FILE).read_text())
    assert record["tiny.bin"]["sha256"] == digest and record["tiny.bin"]["url"] == server.url
    path.write_bytes(b"x" * len(PAYLOAD))  # same size, different content
    with pytest.raises(ChecksumMismatchError, match="was deleted") as info:
        weights.resolve(entry, progress=False)
    assert "recorded at first download" in str(info.value)
    assert not path.exists()


def test_interrupted_download_resumes_with_range(server: Server, cache: Path) -> None:
    server.state.drop_first_after = 100_500
    path = weights.fetch(entry_for(server), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.state.ranges == [None, "bytes=100000-"]  # whole chunks received before the drop


def test_interrupted_download_resumes_in_a_later_call(server: Server, cache: Path) -> None:
    server.state.drop_every_after = 10_000  # progress each time, but never the whole file
    with pytest.raises(MissingWeightsError, match="kept in .*tiny.bin.part for resuming"):
        weights.fetch(entry_for(server), progress=False)
    kept = (cache / "tiny.bin.part").stat().st_size
    assert kept == 10_000 * (weights.MAX_RESUMES + 1)
    assert len(server.state.ranges) == weights.MAX_RESUMES + 1
    server.state.drop_every_after = None
    server.state.ranges.clear()
    path = weights.fetch(entry_for(server), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.state.ranges == [f"bytes={kept}-"]


def test_complete_partial_file_is_finished_without_a_body(server: Server, cache: Path) -> None:
    cache.mkdir(parents=True)
    (cache / "tiny.bin.part").write_bytes(PAYLOAD)  # e.g. killed between download and rename
    path = weights.fetch(entry_for(server), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.state.ranges == [f"bytes={len(PAYLOAD)}-"]  # answered 416: nothing left to send


def test_server_without_range_support_restarts_the_file(server: Server, cache: Path) -> None:
    cache.mkdir(parents=True)
    (cache / "tiny.bin.part").write_bytes(PAYLOAD[:5000])
    server.state.ignore_range = True
    path = weights.fetch(entry_for(server), progress=False)
    assert path.read_bytes() == PAYLOAD


def test_checksum_mismatch_is_rejected(server: Server, cache: Path) -> None:
    entry = entry_for(server, sha256="0" * 64)
    with pytest.raises(ChecksumMismatchError) as info:
        weights.fetch(entry, progress=False)
    msg = str(info.value)
    assert "0" * 64 in msg and "deleted" in msg and "tiny.bin" in msg
    assert not (cache / "tiny.bin").exists() and not (cache / "tiny.bin.part").exists()


def test_wrong_size_is_rejected_before_hashing(server: Server, cache: Path) -> None:
    entry = replace(entry_for(server), size=len(PAYLOAD) + 1)
    with pytest.raises(ChecksumMismatchError, match="bytes"):
        weights.fetch(entry, progress=False)


def test_offline_with_cached_file(server: Server, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights.fetch(entry_for(server), progress=False)
    server.state.ranges.clear()
    monkeypatch.setenv("UVIS_OFFLINE", "1")
    assert weights.resolve(entry_for(server)).read_bytes() == PAYLOAD
    assert server.state.ranges == []


def test_offline_without_cached_file(server: Server, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UVIS_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as info:
        weights.resolve(entry_for(server))
    msg = str(info.value)
    assert "UVIS_OFFLINE=1" in msg and "tiny.bin" in msg and server.url in msg and str(cache / "tiny.bin") in msg
    assert server.state.ranges == []  # the network was not touched
    monkeypatch.delenv("UVIS_OFFLINE")
    with pytest.raises(MissingWeightsError, match="offline=True"):
        weights.resolve(entry_for(server), offline=True)
    assert server.state.ranges == []


def test_no_network_fails_fast(cache: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    entry = WeightsEntry(name="gone", url=f"http://127.0.0.1:{port}/gone.pth", filename="gone.pth", size=None,
                         license="test")
    start = time.monotonic()
    with pytest.raises(MissingWeightsError) as info:
        weights.resolve(entry, progress=False)
    assert time.monotonic() - start < weights.CONNECT_TIMEOUT_S + 2
    msg = str(info.value)
    assert "gone.pth" in msg and entry.url in msg and str(cache / "gone.pth") in msg


def test_local_path_always_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UVIS_OFFLINE", "1")
    local = tmp_path / "my_weights.pth"
    local.write_bytes(b"weights")
    assert weights.resolve(local) == local
    assert weights.resolve(str(local)) == local
    assert weights.resolve_with_digest(local)[1] == hashlib.sha256(b"weights").hexdigest()
    with pytest.raises(MissingWeightsError, match="no such file"):
        weights.resolve(tmp_path / "absent.pth")
    with pytest.raises(BadInputError, match="not a file"):
        weights.resolve(tmp_path)


def test_registry() -> None:
    assert set(weights.REGISTRY) >= {"cutler_cascade_final", "cutler_mrcnn_final"}
    for name in ("cutler_cascade_final", "cutler_mrcnn_final"):
        entry = weights.REGISTRY[name]
        assert entry.url == f"https://dl.fbaipublicfiles.com/cutler/checkpoints/{name}.pth"
        assert weights.lookup(f"{name}.pth") is entry
    with pytest.raises(TypeError):
        weights.REGISTRY["x"] = weights.REGISTRY["cutler_mrcnn_final"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        weights.REGISTRY["cutler_mrcnn_final"].url = "http://elsewhere"  # type: ignore[misc]


def test_registry_name_offline_names_file_url_and_place(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    monkeypatch.setenv("UVIS_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as info:
        weights.resolve("cutler_cascade_final")
    msg = str(info.value)
    assert "cutler_cascade_final.pth" in msg
    assert "https://dl.fbaipublicfiles.com/cutler/checkpoints/cutler_cascade_final.pth" in msg
    assert str(cache / "cutler_cascade_final.pth") in msg


def test_cli_list_path_fetch(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                             cache: Path) -> None:
    assert weights_cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "cutler_cascade_final" in out and "cutler_mrcnn_final" in out and "missing" in out
    assert weights_cli.main(["path", "cutler_mrcnn_final"]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == str(cache / "cutler_mrcnn_final.pth") and "not downloaded" in captured.err
    cache.mkdir(parents=True)
    (cache / "cutler_mrcnn_final.pth").write_bytes(b"w")
    assert weights_cli.main(["path", "cutler_mrcnn_final"]) == 0
    monkeypatch.setenv("UVIS_OFFLINE", "1")
    assert weights_cli.main(["fetch", "cutler_cascade_final", "--quiet"]) == 2
    assert "cutler_cascade_final.pth" in capsys.readouterr().err
    assert weights_cli.main(["fetch", "nope"]) == 2
    assert "unknown weights" in capsys.readouterr().err


def test_cli_registers_on_a_parent_parser() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    weights_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["weights", "path", "cutler_cascade_final"])
    assert args.func is weights_cli.run and args.name == "cutler_cascade_final"


def test_a_stalled_name_lookup_fails_within_the_deadline(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    def stall(*args: object, **kwargs: object) -> None:
        time.sleep(30)  # as getaddrinfo does when the DNS server does not answer

    monkeypatch.setattr(weights, "CONNECT_TIMEOUT_S", 0.5)
    monkeypatch.setattr(socket, "create_connection", stall)
    entry = WeightsEntry(name="slow", url="https://weights.invalid/slow.pth", filename="slow.pth", size=None,
                         license="test")
    start = time.monotonic()
    with pytest.raises(MissingWeightsError, match="did not answer within 0.5 s"):
        weights.resolve(entry, progress=False)
    assert time.monotonic() - start < 3
