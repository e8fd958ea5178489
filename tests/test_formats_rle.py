"""uvis.formats.rle: RLE and polygons checked before pycocotools sees them.

Run lengths are checked against runs computed here from dense masks with a plain
loop (not with the code under test); malformed counts, sizes and polygons are refused
with the JSON path in the message."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from uvis import masks as M
from uvis.formats.base import MAX_SIDE, FormatError
from uvis.formats.rle import coerce_native, decode_counts, parse_polygons, parse_rle, parse_segmentation
from uvis.testing import column_runs


runs_of = column_runs  # plain-loop reference

def compressed(mask: np.ndarray) -> str:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()


def test_decode_counts_matches_runs_of_random_masks():
    rng = np.random.default_rng(7)
    for trial in range(120):
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        mask = rng.random((h, w)) < rng.random()
        if trial % 4 == 0:  # long runs: several characters per run, negative deltas
            mask = np.zeros((h, w), bool)
            mask[int(rng.integers(0, h)):, int(rng.integers(0, w)):] = True
        assert decode_counts(compressed(mask).encode()).tolist() == runs_of(mask), trial


def test_valid_forms_come_back_compressed_and_identical():
    mask = np.zeros((12, 16), bool)
    mask[2:7, 3:11] = True
    c = compressed(mask)
    assert parse_rle({"size": [12, 16], "counts": c}, "f: x") == {"size": [12, 16], "counts": c}  # byte-for-byte
    unc = parse_rle({"size": [12, 16], "counts": runs_of(mask)}, "f: x")
    assert unc == {"size": [12, 16], "counts": c}
    poly = parse_polygons([[3, 2, 11, 2, 11, 7, 3, 7]], "f: x", (12, 16))
    assert poly["size"] == [12, 16] and 30 <= int(M.area([poly])[0]) <= 60
    big = np.zeros((MAX_SIDE, 4), bool)
    big[5:, 1:] = True
    assert parse_rle({"size": [MAX_SIDE, 4], "counts": compressed(big)}, "f: x")["size"] == [MAX_SIDE, 4]


@pytest.mark.parametrize("obj,path,message", [
    ({"size": [4, 4], "counts": "z"}, "counts", "is not a compressed RLE character"),
    ({"size": [4, 4], "counts": "W"}, "counts", "the last run is cut off"),
    ({"size": [4, 4], "counts": "0" + "P" * 7 + "0"}, "counts", "takes 8 characters"),
    ({"size": [4, 4], "counts": "1"}, "counts", "runs sum to 1 pixels but size 4x4 has 16"),
    ({"size": [4, 4], "counts": compressed(np.ones((40, 40), bool))}, "counts", "runs sum to 1600 pixels"),
    ({"size": [4, 4], "counts": "0O"}, "counts", "negative run"),
    ({"size": [4, 4], "counts": "é"}, "counts", "must be ASCII"),
    ({"size": [4, 4], "counts": [8, 9]}, "counts", "uncompressed RLE runs sum to 17"),
    ({"size": [4, 4], "counts": [-1, 17]}, "counts", "must be non-negative integers"),
    ({"size": [4, 4], "counts": [1.5, 14.5]}, "counts", "must be non-negative integers"),
    ({"size": [4, 4], "counts": [10 ** 30]}, "counts", "must be non-negative integers"),
    ({"size": [4, 4], "counts": 7}, "counts", "must be a string"),
    ({"size": [4], "counts": ""}, "size", "'size' must be"),
    ({"size": [1e300, 4], "counts": ""}, "size", "'size' must be"),
    ({"size": [0, 4], "counts": ""}, "size", "'size' must be"),
    ({"size": [MAX_SIDE + 1, 4], "counts": ""}, "size", "'size' must be"),
    ({"size": [True, 4], "counts": ""}, "size", "'size' must be"),
    ({"counts": ""}, None, "an RLE must be an object with 'size'"),
])
def test_bad_rle_names_the_place(obj, path, message):
    with pytest.raises(FormatError, match=message) as info:
        parse_rle(obj, "gt.json: annotations[3].segmentations[7]")
    want = "gt.json: annotations[3].segmentations[7]" + (f".{path}" if path else "")
    assert str(info.value).startswith(want + ":")


def test_size_must_match_the_frame():
    c = compressed(np.zeros((4, 4), bool))
    with pytest.raises(FormatError, match=r"RLE size \[4, 4\] does not match video 2 \[height, width\] = \[4, 5\]"):
        parse_segmentation({"size": [4, 4], "counts": c}, "f: s", size=(4, 5), size_of="video 2")


@pytest.mark.parametrize("poly,message", [
    ([[0, 0, 1e300, 0, 5, 5]], r"\[0\]: polygon x coordinates must lie within \[-16, 32\].*1e\+300"),
    ([[0, 0, 5, 0, 5, -1e9]], r"\[0\]: polygon y coordinates must lie within \[-12, 24\]"),
    ([[0, 0, 5, 0, 5, float("nan")]], "must be finite numbers"),
    ([[0, 0, 5, 0, 5, float("inf")]], "must be finite numbers"),
    ([[0, 0, 5, 0, 5, 10 ** 400]], "must be finite numbers"),
    ([[0, 0, 5, 0, 5, "7"]], "must be finite numbers"),
    ([[0, 0, 5, 0, 5, True]], "must be finite numbers"),
    ([[0, 0, 5, 0]], "at least 3"),
    ([[0, 0, 5, 0, 5]], "at least 3"),
    ([], "non-empty list"),
    ([5], "non-empty list"),
])
def test_bad_polygons_never_reach_pycocotools(poly, message):
    with pytest.raises(FormatError, match=message):
        parse_segmentation(poly, "gt.json: annotations[0].segmentations[1]", size=(12, 16))


def test_polygons_need_a_size_and_results_refuse_them():
    with pytest.raises(FormatError, match="needs the frame size"):
        parse_segmentation([[0, 0, 4, 0, 4, 4]], "f: s")
    with pytest.raises(FormatError, match="not polygons"):
        parse_segmentation([[0, 0, 4, 0, 4, 4]], "f: s", size=(8, 8), allow_polygons=False)
    with pytest.raises(FormatError, match="must be an RLE object or a polygon list"):
        parse_segmentation(42, "f: s")


def test_coerce_native_checks_what_a_caller_hands_in():
    c = compressed(np.ones((3, 3), bool))
    assert coerce_native({"size": [3, 3], "counts": c})["counts"] == c.encode()
    native = {"size": [3, 3], "counts": c.encode()}
    assert coerce_native(native) is native
    with pytest.raises(FormatError, match="runs sum"):
        coerce_native({"size": [3, 3], "counts": "1"})
    with pytest.raises(FormatError, match="'size' must be"):
        coerce_native({"size": [-3, 3], "counts": b"1"})
