import numpy as np
import pytest

from uvis import masks as M
from uvis.types import Instances, Reason


def _square(h, w, y0, x0, s):
    m = np.zeros((h, w), bool)
    m[y0:y0 + s, x0:x0 + s] = True
    return m


def test_rle_round_trip_and_area_bbox():
    rng = np.random.default_rng(0)
    stack = rng.random((3, 17, 23)) > 0.5
    rles = M.encode_many(stack)
    assert all(isinstance(r["counts"], str) for r in rles)
    for m, r in zip(stack, rles):
        assert np.array_equal(M.decode(r), m)
    assert list(M.area(rles)) == [int(m.sum()) for m in stack]
    box = M.to_bbox([M.encode(_square(20, 30, 4, 5, 6))])[0]
    assert box.tolist() == [5, 4, 11, 10]


def test_iou_matrix_and_box_iou():
    a = M.encode(_square(20, 20, 0, 0, 10))
    b = M.encode(_square(20, 20, 0, 5, 10))
    iou = M.iou_matrix([a], [a, b])
    assert iou[0, 0] == pytest.approx(1.0)
    assert iou[0, 1] == pytest.approx(50 / 150)
    bi = M.box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 5, 10, 15], [20, 20, 30, 30]]))
    assert bi[0, 0] == pytest.approx(50 / 150) and bi[0, 1] == 0


def test_instances_validate_and_index():
    rles = M.encode_many(np.stack([_square(10, 10, 0, 0, 3), _square(10, 10, 5, 5, 3)]))
    inst = Instances(boxes=[[0, 0, 3, 3], [5, 5, 8, 8]], masks=rles, objectness=[0.9, 0.2], image_size=(10, 10),
                     embeddings=np.eye(2, 4))
    assert inst.boxes.dtype == np.float32 and inst.frame.tolist() == [0, 0]
    sub = inst[inst.objectness > 0.5]
    assert len(sub) == 1 and sub.masks[0] == rles[0] and sub.embeddings.shape == (1, 4)
    with pytest.raises(ValueError, match="parallel"):
        Instances(boxes=[[0, 0, 1, 1]], masks=rles, objectness=[0.5, 0.5], image_size=(10, 10))
    with pytest.raises(IndexError):
        inst[np.array([True])]
    both = Instances.concatenate([inst, inst.with_fields(frame=np.array([1, 1]))])
    assert len(both) == 4 and both.frame.tolist() == [0, 0, 1, 1]
    assert [s.stop - s.start for s in both.frame_slices(3)] == [2, 2, 0]
    assert Reason.from_key("pmf") == Reason.PMF and Reason.USER_REJECT.key == "user_reject"
