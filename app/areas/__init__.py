"""Per-area builders of the page. Each module has ``build(ctx)`` (creates and registers
its components inside the current Blocks layout) and ``wire(ctx)`` (its events, all
through :func:`app.shell.on`). Callbacks are module-level functions taking the
controller first; domain rules live in the controller or ``uvis/``."""
