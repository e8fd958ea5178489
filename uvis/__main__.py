"""``python -m uvis``: see :mod:`uvis.cli`."""
from uvis.cli import main

raise SystemExit(main())
