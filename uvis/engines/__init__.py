"""Labelling engines: where the expensive stages (proposer, embedder) run.

* ``local`` (the default): one process, one device (:class:`uvis.runner.Runner`).
* ``ray``: a pool of Ray actors on one machine or a cluster
  (:mod:`uvis.engines.ray_engine`); Ray is an optional package, imported only when
  this engine is chosen.

Both write the same per-frame cache files through :mod:`uvis.engines.local`'s
:func:`~uvis.engines.local.label_frames`, so their caches are interchangeable.
"""
from __future__ import annotations

ENGINES: tuple[str, ...] = ("local", "ray")
"""Engine names accepted by ``python -m uvis label --engine``."""

DEFAULT_ENGINE = "local"
