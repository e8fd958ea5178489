"""The proposer interface: one RGB frame in, class-agnostic instances out."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from uvis.types import Instances


@runtime_checkable
class Proposer(Protocol):
    """Makes class-agnostic instance proposals for the frames of one video.

    ``name`` identifies the backend and its settings in the cache (a change of name
    invalidates cached proposals). ``reset()`` is called before each video (stateful
    proposers such as background subtraction start afresh). ``propose`` takes frame
    ``t`` (0-based) as an RGB uint8 (H, W, 3) array and returns its instances with
    boxes xyxy in that frame's pixels, masks as RLE at (H, W) and objectness in [0,1].
    Proposals below the configured objectness threshold may still be returned (the
    score filter decides); proposers only apply their own internal minimum.
    """

    name: str

    def reset(self) -> None: ...

    def propose(self, frame: np.ndarray, t: int) -> Instances: ...
