"""Export and import of pseudo-labels (DESIGN §4).

* :mod:`uvis.export.ytvis`: YouTube-VIS annotation and results JSON.
* :mod:`uvis.export.coco`: COCO instances JSON with per-frame JPEGs (detectron2 training).
* :mod:`uvis.export.fiftyone_export`: FiftyOne video datasets (H.264 media).
* :mod:`uvis.export.fiftyone_app`: launch/stop the FiftyOne App.
* :mod:`uvis.export.importers`: ground truth with frames, our exports, predictions, FiftyOne.
* :mod:`uvis.export.cli`: ``python -m uvis export`` and ``python -m uvis import``.

Importing this package imports none of them (fiftyone stays unloaded until used).
"""
