import numpy as np
import pytest

from uvis.db import WorkspaceDB
from uvis.errors import BadInputError


def test_curation_log_append_only_undo_redo(tmp_path):
    db = WorkspaceDB(tmp_path / "uvis.sqlite")
    a = db.log("v1", "accept", {"frame": 0, "index": 1})
    b = db.log("v1", "relabel", {"frame": 2, "index": 0, "label": "dog"})
    db.log("v2", "reject", {"frame": 0, "index": 0})
    assert [x.id for x in db.active("v1")] == [a, b]
    assert db.undo("v1").id == b
    assert [x.id for x in db.active("v1")] == [a]
    assert db.redo("v1").id == b
    assert [x.id for x in db.active("v1")] == [a, b]
    db.undo("v1")
    c = db.log("v1", "split", {"at": [3, 0]})  # a new action clears the redo stack
    assert db.redo("v1") is None
    assert [x.id for x in db.active("v1")] == [a, c]
    assert len(db.entries("v1")) == 6  # nothing deleted: 3 actions + undo + redo + undo
    with pytest.raises(BadInputError, match="unknown curation action"):
        db.log("v1", "delete", {})
    db.close()
    # survives reopening (a restart)
    db2 = WorkspaceDB(tmp_path / "uvis.sqlite")
    assert [x.action for x in db2.active("v1")] == ["accept", "split"]
    assert [x.action for x in db2.active("v2")] == ["reject"]
    assert db2.undo("nothing") is None


def test_videos_and_config_versions(tmp_path):
    db = WorkspaceDB(tmp_path / "w.sqlite")
    db.upsert_video("a", "/x/a.mp4", cache_key="k1", num_frames=10, width=4, height=3)
    db.upsert_video("a", "/x/a.mp4", cache_key="k2", num_frames=12, width=4, height=3, status="done")
    rec = db.video("a")
    assert rec.cache_key == "k2" and rec.num_frames == 12 and rec.status == "done"
    first = db.save_config('{"a": 1}', note="one")
    assert db.save_config('{"a": 1}') == first  # identical config is not duplicated
    second = db.save_config('{"a": 2}')
    assert second != first and db.latest_config() == (second, '{"a": 2}')
    assert len(db.config_versions()) == 2
    np.testing.assert_equal([v.name for v in db.videos()], ["a"])
