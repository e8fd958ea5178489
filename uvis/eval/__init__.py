"""Evaluation against ground truth (DESIGN §1.7).

* :mod:`uvis.eval.frame_f1`: frame-level per-class F1 (the paper's Table 1).
* :mod:`uvis.eval.ytvis_ap`: video-level YouTube-VIS AP/AR.
* :mod:`uvis.eval.ytvis_io`: YouTube-VIS ground truth and results for evaluation (parsed and validated by
  :mod:`uvis.formats.ytvis`), ``frames_from_ytvis``.
* :mod:`uvis.eval.report`: the Table-1 report (Markdown, CSV, bar chart).
* :mod:`uvis.eval.workspace_eval`: Table 1 from a workspace's cached decisions.
* :mod:`uvis.eval.cli`: the ``eval`` command.

Neither matplotlib nor fiftyone is imported here.
"""
from uvis.eval.frame_f1 import AGNOSTIC_CLASS, ClassCounts, F1Result, FrameObject, frame_f1
from uvis.eval.ytvis_ap import APResult, evaluate_ytvis
from uvis.eval.ytvis_io import YtvisFrames, YtvisGroundTruth, frames_from_ytvis, load_ground_truth, load_results

__all__ = [
    "AGNOSTIC_CLASS", "APResult", "ClassCounts", "F1Result", "FrameObject", "YtvisFrames", "YtvisGroundTruth",
    "evaluate_ytvis", "frame_f1", "frames_from_ytvis", "load_ground_truth", "load_results",
]
