"""uvis.formats.json_io: JSON read under size, depth and element-count limits."""
from __future__ import annotations

import json

import pytest

from uvis.formats.base import FormatError
from uvis.formats.json_io import json_shape, read_json


def test_valid_json_and_its_shape(tmp_path):
    p = tmp_path / "ok.json"
    data = {"a": [1, 2, {"b": '[[[not brackets]]], \\" too'}], "c": []}
    p.write_text(json.dumps(data))
    assert read_json(p) == data
    depth, elements = json_shape(p.read_bytes())
    assert depth == 3 and elements >= 6


def test_deep_nesting_is_refused_without_recursion_error(tmp_path):
    p = tmp_path / "deep.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FormatError, match=r"deep\.json: .*nests JSON 100000 levels deep, more than the 64"):
        read_json(p)


def test_limits_on_elements_and_bytes(tmp_path):
    p = tmp_path / "many.json"
    p.write_text(json.dumps(list(range(1000))))
    with pytest.raises(FormatError, match="holds about 1001 JSON values, more than the 100 allowed"):
        read_json(p, max_elements=100)
    with pytest.raises(FormatError, match=r"many\.json: the file is \d+ bytes, more than the 10 read"):
        read_json(p, max_bytes=10)


@pytest.mark.parametrize("raw,message", [
    (b'{"a": 1,,}', r"malformed JSON in the ground truth \(.* at line 1, column 9\)"),
    (b"\xff\xfe{}", r"ground truth is not UTF-8"),
    (b"", r"malformed JSON"),
    (b'{"a": NaN}', None),  # Python's reader accepts NaN; the parsers check numbers
])
def test_malformed_files(tmp_path, raw, message):
    p = tmp_path / "f.json"
    p.write_bytes(raw)
    if message is None:
        assert read_json(p, "ground truth") is not None
        return
    with pytest.raises(FormatError, match=message):
        read_json(p, "ground truth")


def test_missing_file(tmp_path):
    with pytest.raises(FormatError, match=r"nope\.json: ground truth not found"):
        read_json(tmp_path / "nope.json", "ground truth")
