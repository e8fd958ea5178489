"""What is exported is exactly what the person saw and chose (issue 9), end to end.

The bundled clip is labelled once per module — offline with the exact command of the
README (motion proposals, EfficientNet-Lite0 embeddings) and with the tiny random CLIP —
then seeded random sequences of curation actions (accept, reject, relabel,
apply-to-similar, whole-track actions, merge, split, draw, undo, redo), settings changes
and vocabulary edits are driven through the app's controller. The test keeps its own
model of what the person did (a stack of actions with undo/redo) and, after each
sequence, checks that

* every instance the person curated shows the class they gave it (rejected: not kept),
* the YouTube-VIS and FiftyOne exports, read back, agree exactly with what the
  controller shows, instance by instance: kept or not, class, track.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.state import AppController
from uvis import masks as M
from uvis.batch import StaleProposal, track_refs
from uvis.config import CLASS_AGNOSTIC_NAME, Config
from uvis.curation import CARRY_OVER_IOU
from uvis.export.importers import import_fiftyone_dataset, read_ytvis_instances
from uvis.export.ytvis import export_ytvis
from uvis.types import Reason
from uvis.workspace import Workspace

pytestmark = pytest.mark.slow

VIDEO = "vtest_150"
TINY = ["--embedder", "clip", "--clip-model", "uvis-tiny-vit", "--clip-pretrained", "none"]
CLIP_FRAMES = 60


def _uvis(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, UVIS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "uvis", *args], capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def offline_ws(tmp_path_factory, example_video) -> Path:
    """The README's offline command, once: motion + EfficientNet, all 150 frames."""
    ws = tmp_path_factory.mktemp("offline") / "ws"
    out = _uvis("label", str(example_video), "--proposer", "motion", "--embedder", "efficientnet",
                "-w", str(ws), "--quiet")
    assert out.returncode == 0, out.stderr
    return ws


@pytest.fixture(scope="module")
def clip_ws(tmp_path_factory, example_video) -> Path:
    """The clip's first 60 frames with the tiny CLIP (a text encoder: label source prompts)."""
    ws = tmp_path_factory.mktemp("clip") / "ws"
    cfg = ws.parent / "cfg.yaml"
    Config().replace(filters__clip_threshold=0.0, filters__pmf_threshold=0.3).save(cfg)
    out = _uvis("label", str(example_video), "-w", str(ws), "--max-frames", str(CLIP_FRAMES), "--quiet",
                "--config", str(cfg), "--vocabulary", "person,car,dog", *TINY)
    assert out.returncode == 0, out.stderr
    return ws


def test_offline_label_then_export_gives_tracked_objects(offline_ws, tmp_path):
    out = _uvis("export", "-w", str(offline_ws), "--to", "ytvis", "--out", str(tmp_path / "ytvis.json"))
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "ytvis.json").read_text())
    assert [c["name"] for c in data["categories"]] == [CLASS_AGNOSTIC_NAME]
    n_frames = data["videos"][0]["length"]
    frames = {t for a in data["annotations"] for t, s in enumerate(a["segmentations"]) if s is not None}
    assert n_frames == 150 and len(frames) >= 0.8 * n_frames, len(frames)  # pedestrians throughout the clip
    lengths = sorted(sum(s is not None for s in a["segmentations"]) for a in data["annotations"])
    assert lengths[-1] >= 30, lengths  # tracked, not one annotation per frame
    show = _uvis("show", "-w", str(offline_ws))
    assert show.returncode == 0 and "(labels: none)" in show.stdout


# ----------------------------------------------------------------------------- the person's model
class PersonModel:
    """What the person did, independent of the code under test: applied actions as a stack
    of {fingerprint: (kind, label)} with undo/redo (a new action clears the redo stack)."""

    def __init__(self) -> None:
        self.applied: list[dict[str, tuple[str, str | None]]] = []
        self.undone: list[dict[str, tuple[str, str | None]]] = []

    def do(self, effects: dict[str, tuple[str, str | None]]) -> None:
        self.applied.append(effects)
        self.undone.clear()

    def undo(self) -> None:
        if self.applied:
            self.undone.append(self.applied.pop())

    def redo(self) -> None:
        if self.undone:
            self.applied.append(self.undone.pop())

    def effective(self) -> dict[str, tuple[str, str | None]]:
        out: dict[str, tuple[str, str | None]] = {}
        for eff in self.applied:
            out.update(eff)
        return out


def _fp_of_row(res, row: int) -> str:
    from uvis.curation import fingerprint

    inst = res.instances
    return fingerprint(int(inst.frame[row]), inst.boxes[row], inst.masks[row]["counts"])


def _ref(res, row: int) -> tuple[int, int]:
    t = int(res.instances.frame[row])
    return t, row - res.frame_rows(t).start


def _random_config(rng: random.Random, cfg: Config) -> Config:
    return cfg.replace(filters__objectness_threshold=rng.choice([0.5, 0.6, 0.7, 0.8]),
                       filters__pmf_threshold=rng.choice([0.2, 0.3, 0.5]),
                       tracker__embedding_weight=rng.choice([0.3, 0.5, 0.7]),
                       tracker__max_cost=rng.choice([0.5, 0.6, 0.8]))


def _with_class(cfg: Config, label: str) -> Config:
    vocab = list(cfg.labeler.vocabulary)
    return cfg if label in vocab else cfg.replace(labeler__vocabulary=[*vocab, label])


def _drive(ctrl: AppController, cfg: Config, rng: random.Random, steps: int, classes: list[str]) -> tuple[Config, PersonModel, dict]:
    model = PersonModel()
    stats = {k: 0 for k in ("accept", "reject", "relabel", "similar", "track", "merge", "split", "draw", "undo",
                            "redo", "settings", "vocabulary", "stale", "preview_checked")}
    proposal = None
    for _ in range(steps):
        res = ctrl.result(VIDEO, cfg)
        n = len(res.instances)
        kept = np.flatnonzero(res.kept)
        r = rng.random()
        row = rng.randrange(n)
        t, i = _ref(res, row)
        vocab = res.vocabulary
        if r < 0.14:
            kind = rng.choice(["accept", "reject", "relabel"])
            label = rng.choice(classes) if kind == "relabel" else (res.class_name(row) if kind == "accept" else None)
            if kind == "relabel":  # as the app does: a new class joins the vocabulary
                cfg = _with_class(cfg, label)
            planned = ctrl.plan(VIDEO, kind, [(t, i)], label=label, config=cfg)
            ctrl.apply(cfg, planned)
            model.do({planned.items[0].fingerprint: (kind, label if kind != "reject" else None)})
            stats[kind] += 1
        elif r < 0.24:  # label by example: propose, then apply to the similar ones (sometimes stale)
            label = rng.choice(classes)
            cfg = _with_class(cfg, label)
            proposal = ctrl.propose_similar(VIDEO, cfg, t, i, label, k=rng.choice([5, 12, 30]))
            if rng.random() < 0.2 and model.applied:
                ctrl.undo(VIDEO)
                model.undo()
                with pytest.raises(StaleProposal):
                    ctrl.apply_similar(VIDEO, cfg, proposal, 0.0)
                stats["stale"] += 1
                continue
            thr = float(np.median([s for _, _, s in proposal.items]))
            preview = ctrl.apply_similar(VIDEO, cfg, proposal, thr, dry_run=True)
            report = ctrl.apply_similar(VIDEO, cfg, proposal, thr)
            assert (preview.instances, preview.tracks) == (report.impact.instances, report.impact.tracks)
            stats["preview_checked"] += 1
            refs = [(f, j) for f, j, s in proposal.items if s >= thr]
            model.do({_fp_of_row(res, res.row(f, j)): ("relabel", proposal.label) for f, j in refs})
            stats["similar"] += 1
        elif r < 0.34 and len(kept):  # a whole track
            row = int(rng.choice(kept.tolist()))
            t, i = _ref(res, row)
            kind = rng.choice(["accept", "reject", "relabel"])
            label = rng.choice(classes) if kind == "relabel" else None
            if label:
                cfg = _with_class(cfg, label)
            members = [res.row(f, j) for f, j in track_refs(res, t, i)]
            preview = ctrl.curate_track(VIDEO, cfg, t, i, kind, label, dry_run=True)
            report = ctrl.curate_track(VIDEO, cfg, t, i, kind, label)
            assert (preview.instances, preview.tracks) == (report.impact.instances, report.impact.tracks)
            stats["preview_checked"] += 1
            model.do({_fp_of_row(res, m): (kind, label if kind == "relabel" else
                                         (res.class_name(m) if kind == "accept" else None)) for m in members})
            stats["track"] += 1
        elif r < 0.40 and len(kept) >= 2:
            a, b = rng.sample(kept.tolist(), 2)
            if res.instances.track_id[a] == res.instances.track_id[b]:
                continue
            ctrl.apply(cfg, ctrl.plan(VIDEO, "merge", [_ref(res, a), _ref(res, b)], config=cfg))
            model.do({})
            stats["merge"] += 1
        elif r < 0.45 and len(kept):
            row = int(rng.choice(kept.tolist()))
            ctrl.apply(cfg, ctrl.plan(VIDEO, "split", [_ref(res, row)], config=cfg))
            model.do({})
            stats["split"] += 1
        elif r < 0.49:  # a drawn box of a random class
            h, w = res.info.height, res.info.width
            x0, y0 = rng.randrange(w - 40), rng.randrange(h - 60)
            mask = np.zeros((h, w), bool)
            mask[y0:y0 + 50, x0:x0 + 30] = True
            label = rng.choice(classes)
            cfg = _with_class(cfg, label)
            aid = ctrl.draw(VIDEO, rng.randrange(res.info.num_frames), mask, label)
            model.do({ctrl.ws.db.items(aid)[0].fingerprint: ("draw", label)})
            stats["draw"] += 1
        elif r < 0.66:
            ctrl.undo(VIDEO)
            model.undo()
            stats["undo"] += 1
        elif r < 0.78:
            ctrl.redo(VIDEO)
            model.redo()
            stats["redo"] += 1
        elif r < 0.90:
            cfg = _random_config(rng, cfg)
            stats["settings"] += 1
        else:  # vocabulary edits: add a class, or remove one (keeping curated classes or not)
            base = list(cfg.labeler.vocabulary)
            if rng.random() < 0.5 or len(base) < 2:
                extra = next((c for c in classes if c not in base), None)
                new = base + ([extra] if extra else [])
                cfg = cfg.replace(labeler__vocabulary=new)
            else:
                drop = rng.choice(base)
                new = [c for c in base if c != drop]
                impact = ctrl.vocabulary_check(new)
                in_use = sum(1 for k, lbl in model.effective().values() if lbl == drop and k != "reject")
                assert impact.removed_in_use.get(drop, 0) == in_use  # exactly the instances the person labelled
                cfg = ctrl.edit_vocabulary(cfg, new, keep_curated=rng.random() < 0.5)
            stats["vocabulary"] += 1
    return cfg, model, stats


def _check_person_classes(res, model: PersonModel) -> int:
    """Every curated instance has the class the person gave it (or is not kept if rejected)."""
    by_fp = {_fp_of_row(res, r): r for r in range(len(res.instances))}
    outside = {(u.frame, u.index) for u in res.unresolved if u.reason == "class_outside_vocabulary"}
    checked = 0
    for fp, (kind, label) in model.effective().items():
        row = by_fp.get(fp)
        assert row is not None, f"a curated instance ({kind} {label}) disappeared from the decisions"
        assert res.user[row]
        if kind == "reject":
            assert res.instances.decision[row] == Reason.USER_REJECT
        elif label is None or (kind == "accept" and label == CLASS_AGNOSTIC_NAME):
            assert res.kept[row]
        elif label in res.vocabulary or res.label_source == "none":
            assert res.kept[row]
            want = CLASS_AGNOSTIC_NAME if res.label_source == "none" else label
            assert res.class_name(row) == want, (kind, label, res.class_name(row))
        else:  # the person removed the class without keeping it: listed, not applied
            assert kind == "draw" or _ref(res, row) in outside
        checked += 1
    return checked


def _check_exports(res, tmp: Path, fo_name: str) -> None:
    """The YouTube-VIS and FiftyOne exports, read back, agree with the view per instance."""
    import fiftyone as fo

    from uvis.export.fiftyone_export import export_fiftyone

    inst = res.instances
    assert not (res.kept & (res.classes < 0)).any()  # nothing kept that an export could not name
    shown = {_ref(res, r): (res.class_name(r), int(inst.track_id[r])) for r in np.flatnonzero(res.kept)}
    path = export_ytvis({VIDEO: res}, tmp / "ytvis.json")
    data = json.loads(path.read_text())
    cats = {c["id"]: c["name"] for c in data["categories"]}
    from_json = {}
    for a in data["annotations"]:
        cols = a["uvis"]["instances"]
        for f, p, tid in zip(cols["frame"], cols["proposal_index"], cols["track_id"]):
            from_json[(f, p)] = (cats[a["category_id"]], tid)
    assert from_json == shown
    back = read_ytvis_instances(path)[VIDEO]
    b_inst = back.instances
    kept_back = {(int(f), int(p)): int(tid) for f, p, tid, k in
                 zip(b_inst.frame, back.proposal_index, b_inst.track_id, back.kept) if k}
    assert kept_back == {k: v[1] for k, v in shown.items()}
    export_fiftyone({VIDEO: res}, fo_name, media_dir=tmp / "media", overwrite=True)
    ds = fo.load_dataset(fo_name)
    labels = ds.values("frames.pseudo_labels.detections.label")[0]
    pidx = ds.values("frames.pseudo_labels.detections.proposal_index")[0]
    tids = ds.values("frames.pseudo_labels.detections.index")[0]
    fns = ds.values("frames.frame_number")[0]
    from_fo = {(fn - 1, int(p)): (lbl, int(tid)) for fn, ls, ps, ts in zip(fns, labels, pidx, tids)
               for lbl, p, tid in zip(ls or [], ps or [], ts or [])}
    assert from_fo == shown
    imported = import_fiftyone_dataset(fo_name)[VIDEO]
    kept_fo = {(int(f), int(p)): int(t) for f, p, t, k in
               zip(imported.instances.frame, imported.proposal_index, imported.instances.track_id, imported.kept) if k}
    assert kept_fo == {k: v[1] for k, v in shown.items()}
    assert int(imported.user.sum()) == int(res.user.sum())


@pytest.mark.parametrize("which,steps,seed", [("offline", 200, 11), ("clip", 200, 7)])
def test_curation_fidelity(which, steps, seed, offline_ws, clip_ws, tmp_path, request):
    src = offline_ws if which == "offline" else clip_ws
    shutil.copytree(src, tmp_path / "ws")
    ws = Workspace(tmp_path / "ws")
    cfg = ws.current_config()
    classes = ["person", "car", "dog", "bicycle"]
    if which == "offline":
        cfg = cfg.replace(labeler__vocabulary=["person", "car"])
    ctrl = AppController(ws, cfg, [], start_worker=False)
    try:
        cfg, model, stats = _drive(ctrl, cfg, random.Random(seed), steps, classes)
        res = ctrl.result(VIDEO, cfg)
        checked = _check_person_classes(res, model)
        _check_exports(res, tmp_path, f"uvis-fidelity-{which}-{seed}")
        assert ws.db.verify(VIDEO)
        print(f"\n{which}: {steps} steps {stats}; {checked} curated instances checked; "
              f"{int(res.kept.sum())} kept of {len(res.instances)}; label source {res.label_source}")
        assert checked >= 20 and stats["undo"] >= 10 and stats["preview_checked"] >= 10
    finally:
        ctrl.close()
        ws.close()


def test_relabel_with_another_motion_mode_carries_curation_over(clip_ws, tmp_path, example_video):
    shutil.copytree(clip_ws, tmp_path / "ws")
    ws_dir = tmp_path / "ws"
    ws = Workspace(ws_dir)
    cfg = ws.current_config()
    ctrl = AppController(ws, cfg, [], start_worker=False)
    res = ctrl.result(VIDEO, cfg)
    old_cache = ctrl.cache(VIDEO)
    rng = random.Random(3)
    rows = rng.sample(range(len(res.instances)), 40)
    curated = {}
    for k, row in enumerate(rows):
        t, i = _ref(res, row)
        kind = "reject" if k % 2 else "relabel"
        ctrl.apply(cfg, ctrl.plan(VIDEO, kind, [(t, i)], label="dog" if kind == "relabel" else None))
        curated[row] = kind
    ctrl.close()
    ws.close()
    cfg_path = tmp_path / "flow.yaml"
    cfg.replace(proposer__motion_mode="flow").save(cfg_path)
    out = _uvis("label", str(example_video), "-w", str(ws_dir), "--max-frames", str(CLIP_FRAMES), "--quiet",
                "--config", str(cfg_path), *TINY)
    assert out.returncode == 0, out.stderr
    ws = Workspace(ws_dir)
    ctrl = AppController(ws, cfg, [], start_worker=False)
    new = ctrl.result(VIDEO, cfg)
    new_cache = ctrl.cache(VIDEO)
    assert new.cache_key != old_cache.directory.name
    listed = {(u.frame, u.index) for u in new.unresolved if u.reason == "earlier_labelling"}
    targets = set()
    for row, kind in curated.items():
        t, i = _ref(res, row)
        if (t, i) in listed:
            continue
        # carried over: exactly one new instance of frame t, with IoU >= the threshold, has the effect
        old_mask = M.to_coco(old_cache.instances.masks[row])
        sl = new.frame_rows(t)
        ious = M.iou_matrix([old_mask], [M.to_coco(new.instances.masks[r]) for r in range(sl.start, sl.stop)])[0]
        hits = [sl.start + j for j in range(len(ious)) if ious[j] >= CARRY_OVER_IOU and new.user[sl.start + j]]
        assert hits, f"curation of frame {t} #{i} neither carried over nor listed"
        targets.update(hits)
    assert len(targets) == len(curated) - len(listed) == int(new.user.sum())
    for r in targets:
        assert new.instances.decision[r] == Reason.USER_REJECT or new.class_name(r) == "dog"
    assert 0 < len(listed) < len(curated)  # flow and background masks differ: some match, some do not
    notice = ctrl.curation_notice(VIDEO, cfg)
    n_listed = len({u.action_id for u in new.unresolved if u.reason == "earlier_labelling"})
    assert notice.startswith(f"{n_listed} curation action") and "earlier labelling of this video" in notice
    show = _uvis("show", "-w", str(ws_dir))
    assert "refer to an earlier labelling" in show.stdout or "refers to an earlier labelling" in show.stdout
    history = ctrl.history(VIDEO, cfg)
    assert sum(bool(h.note) for h in history) == n_listed
    ctrl.close()
    ws.close()
