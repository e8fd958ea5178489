"""JSON value helpers for exporters (atomic writes live in :mod:`uvis.fsutil`)."""
from __future__ import annotations

import math
from typing import Any


def finite_or_none(x: float) -> float | None:
    """``float(x)``, or ``None`` for NaN/inf (JSON has no NaN)."""
    v = float(x)
    return v if math.isfinite(v) else None


def none_to_nan(x: Any) -> float:
    """Inverse of :func:`finite_or_none` for reading: ``None`` -> NaN."""
    return math.nan if x is None else float(x)
