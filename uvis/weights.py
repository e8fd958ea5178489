"""Model weights: a registry of named files, a download cache, SHA-256 checks, offline mode.

Where files live: ``$UVIS_CACHE/weights/<file name>`` (``UVIS_CACHE`` defaults to
``~/.cache/uvis``). Beside them, ``sha256.json`` records the hash of every file whose hash
the registry does not know, at its first download (or first use, for a file put there by
hand); every later load verifies the file against the registry's or the recorded hash. A
mismatch deletes the file and says so.

Downloads stream to ``<file>.part`` with a progress bar, resume an interrupted transfer
with an HTTP ``Range`` request, verify, then rename atomically. Connecting has a short
timeout and is never retried, so a machine without network fails within seconds with a
:class:`~uvis.errors.MissingWeightsError` that names the file, the URL and where to put
it. ``UVIS_OFFLINE=1`` (or ``offline=True``) never touches the network. A local path is
always accepted as is.

Other modules describe their own files with a :class:`WeightsEntry` and pass it to
:func:`resolve` / :func:`fetch`; :data:`REGISTRY` itself is immutable.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from uvis.errors import BadInputError, MissingWeightsError
from uvis.fsutil import atomic_write_text

CONNECT_TIMEOUT_S = 5.0
"""Seconds to open the connection; exceeded means no network, and we do not retry."""
READ_TIMEOUT_S = 60.0
"""Seconds without a byte before a transfer counts as interrupted."""
MAX_RESUMES = 5
"""Resumes of one download after interruptions that made progress."""
CHUNK_BYTES = 1 << 20
"""Read size when hashing."""
DOWNLOAD_CHUNK_BYTES = 1 << 16
"""Write size when downloading; an interruption loses at most one partial chunk."""
HASHES_FILE = "sha256.json"
OFFLINE_ENV = "UVIS_OFFLINE"
CACHE_ENV = "UVIS_CACHE"
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class WeightsEntry:
    """One named weights file.

    Attributes:
        name: registry name, e.g. ``"cutler_cascade_final"``.
        url: where to download it.
        filename: file name in the cache.
        size: bytes, when known (checked before hashing).
        license: licence of the weights (SPDX-like id).
        sha256: hex digest when known; otherwise recorded at first download.
        description: one line for ``weights list``.
        notice: licence terms a user must see when fetching the file (printed on download
            and by ``weights list``), e.g. a non-commercial licence.
    """

    name: str
    url: str
    filename: str
    size: int | None
    license: str
    sha256: str | None = None
    description: str = ""
    notice: str = ""


_CUTLER_BASE = "https://dl.fbaipublicfiles.com/cutler/checkpoints/"
_MINVIS_BASE = "https://huggingface.co/deahuang/MinVIS-Model-Zoo/resolve/main/"
_MASK2FORMER_BASE = "https://dl.fbaipublicfiles.com/maskformer/mask2former/coco/instance/"
_MINVIS_NOTICE = (
    "MinVIS weights are released by NVIDIA under the NVIDIA Source Code License-NC: "
    "non-commercial (research or evaluation) use only; see https://github.com/NVlabs/MinVIS/blob/main/LICENSE"
)


def _minvis(name: str, dataset: str, classes: int) -> "WeightsEntry":
    return WeightsEntry(
        name=name, url=_MINVIS_BASE + name + ".pth", filename=name + ".pth", size=None,
        license="NVIDIA-Source-Code-License-NC",
        description=f"MinVIS R50 (frame-level Mask2Former) trained on {dataset}, {classes} classes; MinVIS/detectron2 keys",
        notice=_MINVIS_NOTICE,
    )


REGISTRY: Mapping[str, WeightsEntry] = MappingProxyType({
    "cutler_cascade_final": WeightsEntry(
        name="cutler_cascade_final",
        url=_CUTLER_BASE + "cutler_cascade_final.pth",
        filename="cutler_cascade_final.pth",
        size=None,
        license="CC-BY-NC-4.0",
        description="CutLER Cascade Mask R-CNN R50-FPN, class-agnostic (ImageNet, self-trained); detectron2 keys",
    ),
    "cutler_mrcnn_final": WeightsEntry(
        name="cutler_mrcnn_final",
        url=_CUTLER_BASE + "cutler_mrcnn_final.pth",
        filename="cutler_mrcnn_final.pth",
        size=None,
        license="CC-BY-NC-4.0",
        description="CutLER Mask R-CNN R50-FPN (one box stage), class-agnostic; detectron2 keys",
    ),
    "minvis_ytvis19_R50": _minvis("minvis_ytvis19_R50", "YouTube-VIS 2019", 40),
    "minvis_ytvis21_R50": _minvis("minvis_ytvis21_R50", "YouTube-VIS 2021", 40),
    "minvis_ovis_R50": _minvis("minvis_ovis_R50", "OVIS", 25),
    "mask2former_coco_instance_R50": WeightsEntry(
        name="mask2former_coco_instance_R50",
        url=_MASK2FORMER_BASE + "maskformer2_R50_bs16_50ep/model_final_3c8ec9.pkl",
        filename="maskformer2_R50_bs16_50ep_model_final_3c8ec9.pkl",
        size=None,
        license="MIT",
        description="Mask2Former R50 COCO instance segmentation (80 classes, 50 epochs): MinVIS's initialisation; "
                    "detectron2 pickle of numpy arrays",
    ),
})
"""Known weights by name (immutable)."""


class ChecksumMismatchError(MissingWeightsError):
    """A weights file failed its SHA-256 check and was deleted."""


# ----------------------------------------------------------------------------- places


def cache_root() -> Path:
    """``$UVIS_CACHE`` or ``~/.cache/uvis``."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/uvis").expanduser()


def weights_dir() -> Path:
    """Folder of downloaded weights: ``<cache root>/weights``."""
    return cache_root() / "weights"


def cached_path(entry: WeightsEntry) -> Path:
    """Where ``entry`` lives in the cache (whether or not it is there)."""
    return weights_dir() / entry.filename


def offline_from_env() -> bool:
    """True when ``UVIS_OFFLINE`` is 1/true/yes/on.

    Only ``UVIS_OFFLINE`` counts here: ``HF_HUB_OFFLINE`` is about the Hugging Face hub.
    """
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE


def lookup(name: str) -> WeightsEntry | None:
    """The registry entry named ``name`` (also accepts its file name), or None."""
    entry = REGISTRY.get(name)
    if entry is not None:
        return entry
    for candidate in REGISTRY.values():
        if candidate.filename == name:
            return candidate
    return None


# ----------------------------------------------------------------------------- hashes


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded_hashes() -> dict[str, dict[str, Any]]:
    """``sha256.json`` of the cache: file name -> {sha256, url, size}."""
    path = weights_dir() / HASHES_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInputError(f"cannot read the weights hash record {path}: {exc}; delete it to start afresh") from exc
    return data if isinstance(data, dict) else {}


def _record_hash(entry: WeightsEntry, digest: str, size: int) -> None:
    folder = weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    data = recorded_hashes()
    data[entry.filename] = {"sha256": digest, "url": entry.url, "size": size}
    atomic_write_text(folder / HASHES_FILE, json.dumps(data, indent=2, sort_keys=True))


def expected_sha256(entry: WeightsEntry) -> tuple[str | None, str]:
    """(hash the file must have or None, where that hash comes from)."""
    if entry.sha256:
        return entry.sha256.lower(), "the registry"
    recorded = recorded_hashes().get(entry.filename, {}).get("sha256")
    return (recorded, f"{weights_dir() / HASHES_FILE} (recorded at first download)") if recorded else (None, "")


def verify(entry: WeightsEntry, path: Path) -> str:
    """Check ``path`` against the entry's size and hash; record the hash if none is known.

    Returns:
        the file's hex SHA-256.
    Raises:
        ChecksumMismatchError: after deleting the file.
    """
    expected, source = expected_sha256(entry)
    size = path.stat().st_size
    problem = None
    digest = ""
    if entry.size is not None and size != entry.size:
        problem = f"has {size} bytes but {entry.name} has {entry.size}"
    else:
        digest = sha256_file(path)
        if expected is not None and digest != expected:
            problem = f"has SHA-256 {digest} but {entry.name} must have {expected} (from {source})"
    if problem:
        path.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"weights file {path} {problem}; the file was deleted. Download it again with "
            f"`python -m uvis weights fetch {entry.name}` (from {entry.url}) or put a good copy at {path}."
        )
    if expected is None:
        _record_hash(entry, digest, size)
    return digest


# ----------------------------------------------------------------------------- download


def _missing(entry: WeightsEntry, reason: str) -> MissingWeightsError:
    dest = cached_path(entry)
    return MissingWeightsError(
        f"weights '{entry.name}' (file {entry.filename}) are not available: {reason}. "
        f"Download {entry.url} and put the file at {dest} (or pass a local path to the file); "
        f"when online, `python -m uvis weights fetch {entry.name}` does it."
    )


def _total_from_headers(response: Any, start: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and not content_range.endswith("*"):
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return None if length is None else start + int(length)


def _transfer(entry: WeightsEntry, part: Path, progress: bool) -> bool:
    """One HTTP request appending to ``part``. Returns True when the file is complete.

    Raises requests exceptions on network trouble; the caller decides about resuming.
    """
    import requests
    from tqdm import tqdm

    start = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={start}-"} if start else {}
    with requests.get(entry.url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)) as r:
        if r.status_code == 416 and start:
            total = _total_from_headers(r, 0) if "/" in r.headers.get("Content-Range", "") else None
            if total == start:
                return True
            part.unlink()  # the partial file does not fit the remote one: start afresh
            return False
        if r.status_code == 200:
            start = 0  # the server ignored the range: rewrite from the beginning
        elif r.status_code != 206:
            raise _missing(entry, f"{entry.url} answered HTTP {r.status_code}")
        total = _total_from_headers(r, start)
        with open(part, "ab" if start else "wb") as f, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
            desc=entry.filename, disable=not progress, leave=False,
        ) as bar:
            for block in r.iter_content(DOWNLOAD_CHUNK_BYTES):
                f.write(block)
                bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
    size = part.stat().st_size
    if total is not None and size < total:
        raise ConnectionError(f"transfer ended at {size} of {total} bytes")
    return True


def _check_reachable(entry: WeightsEntry) -> None:
    """Fail within ``CONNECT_TIMEOUT_S`` when the URL's host (or its HTTPS proxy) cannot be
    reached, name lookup included (see :func:`uvis.netcheck.network_reachable`)."""
    from urllib.parse import urlsplit

    from uvis.netcheck import network_reachable

    parts = urlsplit(entry.url)
    if not parts.hostname:
        raise _missing(entry, f"the URL {entry.url!r} has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not network_reachable(parts.hostname, port, CONNECT_TIMEOUT_S, tls=False):
        raise _missing(entry, f"{parts.hostname}:{port} did not answer within {CONNECT_TIMEOUT_S:g} s (no network?)")


def download(entry: WeightsEntry, *, progress: bool = True) -> Path:
    """Download ``entry`` into the cache (resuming a partial file), verify, rename.

    Raises:
        MissingWeightsError: no network / HTTP error / too many interruptions (the
            partial file is kept for the next attempt to resume).
        ChecksumMismatchError: the downloaded file has the wrong hash (deleted).
    """
    import requests

    _check_reachable(entry)
    if entry.notice:
        import sys

        print(f"note: {entry.notice}", file=sys.stderr, flush=True)
    dest = cached_path(entry)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumes = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            if _transfer(entry, part, progress):
                break
        except (requests.RequestException, ConnectionError, OSError) as exc:
            after = part.stat().st_size if part.exists() else 0
            if after <= before or resumes >= MAX_RESUMES:
                kept = f"; {after} bytes kept in {part} for resuming" if after else ""
                raise _missing(entry, f"download from {entry.url} failed ({type(exc).__name__}: {exc}){kept}") from exc
            resumes += 1
    try:
        verify(entry, part)
    except ChecksumMismatchError as exc:
        raise ChecksumMismatchError(str(exc).replace(str(part), str(dest) + " (downloaded)")) from exc
    os.replace(part, dest)
    return dest


# ----------------------------------------------------------------------------- public


def _entry_or_path(name_or_path: str | Path | WeightsEntry) -> WeightsEntry | Path:
    if isinstance(name_or_path, WeightsEntry):
        return name_or_path
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    entry = lookup(text)
    if entry is not None:
        return entry
    if path.exists():
        raise BadInputError(f"weights path {path} is not a file")
    raise MissingWeightsError(
        f"weights {text!r}: no such file, and not a known name (known: {', '.join(sorted(REGISTRY))})"
    )


def resolve_with_digest(
    name_or_path: str | Path | WeightsEntry, *, offline: bool | None = None, progress: bool = True
) -> tuple[Path, str]:
    """Like :func:`resolve`, also returning the file's verified hex SHA-256 (one read)."""
    target = _entry_or_path(name_or_path)
    if isinstance(target, Path):
        return target, sha256_file(target)
    dest = cached_path(target)
    if dest.is_file():
        return dest, verify(target, dest)
    use_offline = offline_from_env() if offline is None else offline
    if use_offline:
        why = f"offline mode ({OFFLINE_ENV}=1)" if offline is None else "offline mode (offline=True)"
        raise _missing(target, f"{why} and the file is not in the cache")
    dest = download(target, progress=progress)
    return dest, sha256_file(dest)


def resolve(name_or_path: str | Path | WeightsEntry, *, offline: bool | None = None, progress: bool = True) -> Path:
    """A local file of the weights ``name_or_path``.

    Args:
        name_or_path: an existing file path (always used as is), a registry name or file
            name (``"cutler_cascade_final"``, ``"cutler_cascade_final.pth"``), or a
            :class:`WeightsEntry`.
        offline: never use the network; default from ``UVIS_OFFLINE``.
        progress: show a progress bar while downloading.
    Returns:
        the path of a verified file.
    Raises:
        MissingWeightsError: unknown name, or not cached and cannot be downloaded.
        ChecksumMismatchError: the cached or downloaded file failed its check (deleted).
    """
    return resolve_with_digest(name_or_path, offline=offline, progress=progress)[0]


def fetch(name: str | WeightsEntry, *, progress: bool = True) -> Path:
    """Make sure a registry entry is in the cache (download if needed); its verified path."""
    entry = name if isinstance(name, WeightsEntry) else lookup(name)
    if entry is None:
        raise MissingWeightsError(f"unknown weights {name!r} (known: {', '.join(sorted(REGISTRY))})")
    return resolve(entry, progress=progress)


def status(entry: WeightsEntry) -> str:
    """``"cached"``, ``"partial (N bytes)"`` or ``"missing"`` (no hashing)."""
    dest = cached_path(entry)
    if dest.is_file():
        return "cached"
    part = dest.with_name(dest.name + ".part")
    return f"partial ({part.stat().st_size} bytes)" if part.is_file() else "missing"
