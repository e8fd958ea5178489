"""``python -m uvis weights list | fetch NAME | path NAME``.

``list`` shows the registry (name, file, size, licence, whether cached); ``fetch``
downloads a file into the cache (resuming a partial one) and prints its path; ``path``
prints where a file lives in the cache (exit code 1 when it is not there yet).
Exit codes: 0 success, 1 not cached (``path``), 2 unknown name / download failure.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from uvis import weights
from uvis.errors import BadInputError, UvisError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``weights`` on an ``argparse`` sub-parsers object; sets ``func=run``."""
    p = subparsers.add_parser("weights", help="list, download or locate model weights",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    wsub = p.add_subparsers(dest="weights_cmd", required=True)
    wsub.add_parser("list", help="show the weights registry and what is cached")
    f = wsub.add_parser("fetch", help="download weights into the cache (UVIS_CACHE, default ~/.cache/uvis)")
    f.add_argument("name", help="registry name, e.g. cutler_cascade_final")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    pa = wsub.add_parser("path", help="print the cache path of weights (exit 1 if not downloaded)")
    pa.add_argument("name", help="registry name, e.g. cutler_cascade_final")
    p.set_defaults(func=run)
    return p


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _list() -> int:
    print(f"cache: {weights.weights_dir()}")
    rows = [("name", "file", "size", "licence", "status")]
    for entry in weights.REGISTRY.values():
        rows.append((entry.name, entry.filename, _size(entry.size), entry.license, weights.status(entry)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    for entry in weights.REGISTRY.values():
        print(f"{entry.name}: {entry.description} <{entry.url}>")
        if entry.notice:
            print(f"  licence: {entry.notice}")
    return 0


def _entry(name: str) -> weights.WeightsEntry:
    entry = weights.lookup(name)
    if entry is None:
        raise BadInputError(f"unknown weights {name!r}; known: {', '.join(weights.REGISTRY)}")
    return entry


def run(args: argparse.Namespace) -> int:
    """Carry out ``weights list|fetch|path``; returns the exit code."""
    try:
        if args.weights_cmd == "list":
            return _list()
        entry = _entry(args.name)
        if args.weights_cmd == "fetch":
            print(weights.fetch(entry, progress=not args.quiet))
            return 0
        path = weights.cached_path(entry)
        print(path)
        if not path.is_file():
            print(f"{entry.filename} is not downloaded yet: `python -m uvis weights fetch {entry.name}` "
                  f"or put the file from {entry.url} there", file=sys.stderr)
            return 1
        return 0
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except UvisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: ``python -m uvis.weights_cli list``."""
    parser = argparse.ArgumentParser(prog="python -m uvis.weights_cli")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["weights", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
