"""Review queues: placeholder until the batch curation library lands."""
from __future__ import annotations

import gradio as gr

from app.shell import Context


def build(ctx: Context) -> None:
    gr.Markdown("review queues: coming", elem_id="review-box")


def wire(ctx: Context) -> None:
    pass
