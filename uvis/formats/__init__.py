"""The formats layer: every file format UVIS Studio reads or writes is parsed, validated
and written here, once.

* :mod:`uvis.formats.json_io` — reading JSON with size, depth and element-count limits.
* :mod:`uvis.formats.rle` — COCO RLE (compressed / uncompressed) and polygons: checked
  before pycocotools sees them (sizes, finite in-bounds coordinates, runs decoded once
  and summed against H×W).
* :mod:`uvis.formats.ytvis` — YouTube-VIS datasets (ground truth) and results.
* :mod:`uvis.formats.coco` — COCO instances (per-frame images) and results.

Every problem raises :class:`uvis.formats.base.FormatError` (a
:class:`~uvis.errors.BadInputError`, CLI exit 2) whose message names the file, the JSON
path (``annotations[3].segmentations[7]``), the offending value and the remedy.
Atomic writing is :mod:`uvis.fsutil`. Importing this package is light (pycocotools is
imported by the functions that need it).
"""
