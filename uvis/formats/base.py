"""What every format parser shares: the error type, limits, and scalar checks.

A *where* string names the file and the JSON path of a value, e.g.
``"gt.json: annotations[3].segmentations[7]"``; parsers extend it with :func:`at`.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from uvis.errors import BadInputError

#: Largest mask/image side accepted (pixels). Keeps H×W < 2**28, so every run of a
#: compressed RLE fits the 6 characters pycocotools' 32-bit decoder handles exactly.
MAX_SIDE = 16384
#: Most frames one video may declare (``length`` / ``file_names``).
MAX_VIDEO_LENGTH = 100_000
#: Most frames all videos of one file may declare together (bounds evaluation memory).
MAX_TOTAL_FRAMES = 1_000_000

_MISSING = object()


class FormatError(BadInputError):
    """A file's content breaks its format. ``where`` is "file: json.path"; the message
    also gives the value and what to do. CLI exit code 2."""

    def __init__(self, where: str, problem: str, value: Any = _MISSING, remedy: str | None = None) -> None:
        msg = f"{where}: {problem}"
        if value is not _MISSING:
            msg += f" (got {short_repr(value)})"
        if remedy:
            msg += f"; {remedy}"
        super().__init__(msg)
        self.where = where
        self.problem = problem


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters (a value in a message, not the whole file)."""
    if isinstance(value, (list, dict)) and len(value) > 8:
        kind = "list" if isinstance(value, list) else "object"
        return f"a {kind} of {len(value)} entries"
    try:
        r = repr(value)
    except Exception:  # noqa: BLE001 - e.g. an int too large to print
        r = f"<{type(value).__name__}>"
    return r if len(r) <= limit else r[: limit - 3] + "..."


def at(where: str, key: str | int) -> str:
    """``where`` extended by a key (``.key``) or an index (``[i]``)."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    sep = "" if where.endswith(": ") else "."
    return f"{where}{sep}{key}"


def root(source: str, key: str | int | None = None) -> str:
    """The where-string of a file's top level (or of one of its top-level entries)."""
    if key is None:
        return f"{source}: (top level)"
    return f"{source}: {key}" if isinstance(key, str) else f"{source}: [{key}]"


def is_int(x: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x: Any) -> bool:
    """A finite ``int``/``float`` that is not a ``bool``."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an int too large for a float
        return False


def require_object(obj: Any, where: str, keys: Sequence[str] = ()) -> dict[str, Any]:
    """``obj`` as a dict holding ``keys``, else :class:`FormatError`."""
    if not isinstance(obj, dict):
        raise FormatError(where, f"must be a JSON object, not {'a list' if isinstance(obj, list) else type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise FormatError(where, f"missing key(s) {', '.join(repr(k) for k in missing)}",
                          remedy="see docs/export.md for the format")
    return obj


def require_list(obj: Any, where: str, what: str = "a list") -> list[Any]:
    if not isinstance(obj, list):
        raise FormatError(where, f"must be {what}", obj)
    return obj


def int_value(x: Any, where: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """An integer (integral floats such as ``3.0`` accepted) within ``[lo, hi]``."""
    if is_int(x):
        v = x
    elif isinstance(x, float) and math.isfinite(x) and x.is_integer():
        v = int(x)
    else:
        raise FormatError(where, "must be an integer", x)
    if lo is not None and v < lo:
        raise FormatError(where, f"must be >= {lo}", x)
    if hi is not None and v > hi:
        raise FormatError(where, f"must be <= {hi}", x, remedy="a value this large is not a real video/image")
    return v


def number_value(x: Any, where: str, *, lo: float | None = None, hi: float | None = None) -> float:
    """A finite number within ``[lo, hi]``."""
    if not is_number(x):
        raise FormatError(where, "must be a finite number", x)
    v = float(x)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise FormatError(where, f"must be a number in [{lo}, {hi}]", x)
    return v


def side_value(x: Any, where: str) -> int:
    """An image/mask side: an integer in [1, :data:`MAX_SIDE`]."""
    return int_value(x, where, lo=1, hi=MAX_SIDE)
