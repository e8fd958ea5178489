"""UVIS Studio: unsupervised video instance segmentation pseudo-labels.

``import uvis`` is light: it imports neither torch, fiftyone, detectron2 nor gradio.
Entry points: :mod:`uvis.pipeline` (library), ``python -m uvis`` (CLI).
"""
__version__ = "0.1.0"
