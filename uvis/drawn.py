"""Drawn instances in decisions: a person-drawn (or fixed) mask is an instance too.

A ``draw`` curation action (:meth:`uvis.db.WorkspaceDB.log`) adds an instance to a frame
of a video: its mask (RLE at the processed frame size), box, optional class and, once the
app has computed it, its embedding (:meth:`uvis.db.WorkspaceDB.set_draw_embedding`; until
then a zero vector, so tracking links it by mask IoU alone). During a decision pass the
drawn instances of a video are rows ``N .. N + d - 1`` after the cache's N rows; the
decided table puts each after its frame's proposals (so its index within the frame is
``n_t + k``), kept, curated, with the person's class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from uvis.curation import DrawnInstance
from uvis.tracker import MaskIoUMemo
from uvis.types import Instances


@dataclass
class Extension:
    """A cache table with drawn instances appended, and its frame-sorted order.

    ``table``: (N + d) rows in *append* order (cache rows, then drawn ones);
    ``order``: (N + d,) positions of the frame-sorted table -> append-order row;
    ``sorted_row``: the inverse (append-order row -> frame-sorted position);
    ``iou``: mask-IoU memo over the frame-sorted table.
    """

    table: Instances
    order: np.ndarray
    sorted_row: np.ndarray
    iou: MaskIoUMemo

    @property
    def sorted_table(self) -> Instances:
        return self.table[self.order]


def extend(base: Instances, num_frames: int, draws: Sequence[DrawnInstance],
           embeddings: dict[int, np.ndarray]) -> Extension:
    """The cache table ``base`` (frame-sorted, with embeddings) plus ``draws``.

    Args:
        num_frames: cached frames of the video (frame slices of the sorted table).
        embeddings: draw action id -> (D,) embedding (missing: zeros).
    """
    assert base.embeddings is not None and base.frame is not None
    dim = base.embeddings.shape[1]
    size = [int(base.image_size[0]), int(base.image_size[1])]
    emb = np.zeros((len(draws), dim), np.float32)
    for k, d in enumerate(draws):
        e = embeddings.get(d.action_id)
        if e is not None and e.shape == (dim,):
            emb[k] = e / max(float(np.linalg.norm(e)), 1e-12)
    drawn = Instances(boxes=np.asarray([d.box for d in draws], np.float32).reshape(-1, 4),
                      masks=[{"size": size, "counts": d.counts} for d in draws],
                      objectness=np.ones(len(draws), np.float32), image_size=base.image_size,
                      frame=np.asarray([d.frame for d in draws], np.int32), embeddings=emb)
    table = Instances.concatenate([base, drawn])  # fields only one part has are dropped
    order = np.argsort(table.frame, kind="stable")
    sorted_row = np.empty_like(order)
    sorted_row[order] = np.arange(len(order))
    st = table[order]
    return Extension(table, order, sorted_row, MaskIoUMemo(st.masks, st.frame_slices(num_frames)))
