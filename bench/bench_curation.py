"""Curation replay cost with a long log: the kept replay state vs replaying the log.

Builds a workspace database whose curation log holds N actions on one video (default
100,000: accepts, rejects, relabels — some batches of up to 20 instances — merges,
splits, undos and redos over 150 frames × 7 proposals), then measures side by side:

* ``effect``: what decisions read (:meth:`uvis.db.WorkspaceDB.effect`: the effective
  curation per instance from the kept replay state, one indexed query) — target ≤ 100 ms;
* ``replay``: a full tolerant replay of the raw log (:meth:`WorkspaceDB.replay`, the
  repair path), which the kept state avoids;
* ``log``/``undo``: one write each on top of the long log (one ``BEGIN IMMEDIATE``
  transaction).

    python bench/bench_curation.py [--actions 100000]
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from uvis.db import WorkspaceDB


def build(path: Path, n: int, seed: int = 0) -> None:
    """Write ``n`` log rows (and their items) in one go, then build the replay state."""
    db = WorkspaceDB(path)
    rng = random.Random(seed)
    rows, items = [], []
    next_id = 1
    applied: list[int] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.1 and applied:
            rows.append((next_id, "undo", json.dumps({"target": applied.pop()}), None))
        elif r < 0.12:
            rows.append((next_id, "merge", json.dumps({"a": [1, 0], "b": [2, 1]}), "k"))
            items += [(next_id, 0, "merge_a", 1, 0), (next_id, 1, "merge_b", 2, 1)]
            applied.append(next_id)
        else:
            action = rng.choice(["accept", "reject", "relabel"])
            size = 1 if rng.random() < 0.9 else rng.randrange(2, 21)
            refs = [(rng.randrange(150), rng.randrange(7)) for _ in range(size)]
            rows.append((next_id, action, json.dumps({"items": refs, "label": "person"}), "k"))
            items += [(next_id, s, action, t, i) for s, (t, i) in enumerate(refs)]
            applied.append(next_id)
        next_id += 1
    c = db._conn  # bench fixture: bulk insert, then the library rebuilds the state
    c.execute("BEGIN")
    c.executemany("INSERT INTO curation(id, created_at, video, action, payload, cache_key, status) "
                  "VALUES (?, 0, 'v', ?, ?, ?, 'applied')", rows)
    c.execute("UPDATE curation SET status='log' WHERE action IN ('undo', 'redo')")
    c.executemany("INSERT INTO curation_items(action_id, seq, video, kind, frame, idx, fingerprint, cache_key, "
                  "label, applied) VALUES (?, ?, 'v', ?, ?, ?, 'fp' || ? || ':' || ?, 'k', 'person', 1)",
                  [(a, s, k, t, i, t, i) for a, s, k, t, i in items])
    c.execute("COMMIT")
    db.repair("v")
    db.close()


def timed(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--actions", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="uvis-bench-curation-") as tmp:
        path = Path(tmp) / "uvis.sqlite"
        t0 = time.perf_counter()
        build(path, args.actions)
        print(f"log of {args.actions} actions built in {time.perf_counter() - t0:.1f} s")
        db = WorkspaceDB(path)  # a fresh process-like open: nothing memoised
        state = db.effect("v")
        t_effect = timed(lambda: db.effect("v"))
        t_replay = timed(lambda: db.replay("v"), repeat=2)
        t_log = timed(lambda: db.log("v", "accept", {"items": [[3, 1]]}), repeat=3)
        t_undo = timed(lambda: db.undo("v"), repeat=3)
        assert db.verify("v")
        print(f"effective curation: {len(state.effects)} instances, {len(state.structural)} merges/splits")
        print(f"effect (kept replay state)     {t_effect * 1e3:8.1f} ms   target <= 100 ms")
        print(f"full replay of the raw log     {t_replay * 1e3:8.1f} ms   ({t_replay / t_effect:.1f}x the kept state)")
        print(f"one log write / one undo       {t_log * 1e3:8.1f} ms / {t_undo * 1e3:.1f} ms")
        db.close()


if __name__ == "__main__":
    main()
