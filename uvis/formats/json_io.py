"""Reading JSON files with bounded resources.

:func:`read_json` refuses, with a :class:`~uvis.formats.base.FormatError` naming the
file, before or instead of parsing: a missing file, one larger than ``max_bytes``,
text that is not UTF-8, malformed JSON (line and column), nesting deeper than
``max_depth`` (Python's parser would otherwise raise ``RecursionError``) and more than
``max_elements`` values. Depth and element count are measured on the raw bytes with C
speed (strings blanked out, then brackets and commas counted), so the limits cost
little even on a 500 MB ground-truth file. Writing JSON is :func:`uvis.fsutil.atomic_write_json`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from uvis.formats.base import FormatError

#: Deepest nesting accepted (YouTube-VIS/COCO files and our exports need < 10).
MAX_DEPTH = 64
#: Most JSON values (array entries + object members) in one file.
MAX_ELEMENTS = 200_000_000
#: Largest file read (bytes).
MAX_BYTES = 2 << 30

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def json_shape(raw: bytes) -> tuple[int, int]:
    """(maximum nesting depth, approximate number of values) of JSON text ``raw``.

    Strings are blanked first so brackets and commas inside them do not count; the
    value count is commas + containers + 1 (exact for well-formed JSON up to empty
    containers).
    """
    bare = _STRING.sub(b'""', raw)
    arr = np.frombuffer(bare, dtype=np.uint8)
    opens = (arr == ord("[")) | (arr == ord("{"))
    closes = (arr == ord("]")) | (arr == ord("}"))
    idx = np.flatnonzero(opens | closes)
    depth = int(np.cumsum(np.where(opens[idx], 1, -1), dtype=np.int64).max(initial=0))
    elements = int(bare.count(b",")) + int(opens.sum()) + 1
    return depth, elements


def parse_json_bytes(raw: bytes, source: str, what: str = "file", *, max_depth: int = MAX_DEPTH,
                     max_elements: int = MAX_ELEMENTS) -> Any:
    """Parse JSON bytes under the limits of the module docstring (``source`` names the file)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(source, f"the {what} is not UTF-8 JSON text ({exc.reason} at byte {exc.start})",
                          remedy="save it as UTF-8 JSON") from None
    depth, elements = json_shape(raw)
    if depth > max_depth:
        raise FormatError(source, f"the {what} nests JSON {depth} levels deep, more than the {max_depth} allowed",
                          remedy="YouTube-VIS and COCO files need fewer than 10 levels; is it the right file?")
    if elements > max_elements:
        raise FormatError(source, f"the {what} holds about {elements} JSON values, more than the {max_elements} "
                                  "allowed", remedy="split it into smaller files")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(source, f"malformed JSON in the {what} ({exc.msg} at line {exc.lineno}, "
                                  f"column {exc.colno})", remedy="fix or re-export the file") from None
    except RecursionError:  # pragma: no cover - prevented by the depth check
        raise FormatError(source, f"the {what} nests JSON too deeply") from None


def read_json(path: str | Path, what: str = "file", *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
              max_elements: int = MAX_ELEMENTS) -> Any:
    """Read and parse a JSON file under the limits of the module docstring.

    Raises:
        FormatError: naming ``path`` (and ``what`` it is, e.g. "ground truth").
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(str(path), f"{what} not found", remedy="check the path")
    size = path.stat().st_size
    if size > max_bytes:
        raise FormatError(str(path), f"the {what} is {size} bytes, more than the {max_bytes} read",
                          remedy="split it into smaller files")
    return parse_json_bytes(path.read_bytes(), str(path), what, max_depth=max_depth, max_elements=max_elements)
