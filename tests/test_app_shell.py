"""The app's pure pieces added for issue 10: tag placement, reason words, the timeline,
history words, the one error wrapper and the export guard against pending settings."""
import json

import gradio as gr
import numpy as np
import pytest

from app import canvas, timeline
from app.areas import curation, export
from app.render import Panel, Tag
from app.shell import Context, notice_html, on, parse_command
from app.state import ViewState
from uvis.config import Config
from uvis.errors import BadInputError
from uvis.types import Reason, reason_css


def _overlap(a, b):
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


def test_tags_are_placed_inside_the_image_without_overlap():
    rng = np.random.default_rng(0)
    tags = []
    for i in range(25):  # crowded: many boxes around the same spot, as in a busy frame
        x0, y0 = rng.uniform(200, 300), rng.uniform(100, 160)
        tags.append(Tag(i, f"#{i} person 0.{i:02d}", (10, 20, 30), (x0, y0, x0 + 40, y0 + 90)))
    placed, hidden = canvas.place_tags(tags, 640, 480, canvas.GRID_FONT, reserved=[(0, 0, 200, 20)])
    assert len(placed) + len(hidden) == len(tags) and len(placed) >= 10
    for i, a in enumerate(placed):
        assert 0 <= a.x and a.x + a.w <= 640 + 1e-6 and 0 <= a.y and a.y + a.h <= 480 + 1e-6
        assert not (a.x < 200 and a.y < 20), "a tag covers the reserved title"
        for b in placed[i + 1:]:
            assert not _overlap(a, b), (a, b)
    # a lone tag sits just above its box
    (one,), _ = canvas.place_tags([Tag(0, "#0 cat", (0, 0, 0), (100, 200, 150, 260))], 640, 480)
    assert one.x == 100 and one.y + one.h == pytest.approx(200)


def test_panel_html_has_hit_areas_with_details_and_counts_hidden_tags():
    img = np.zeros((48, 64, 3), np.uint8)
    tags = [Tag(i, "#%d a very long tag text here" % i, (200, 0, 0), (10, 10, 30, 30)) for i in range(6)]
    html_ = canvas.panel_html("a", "(a) t", Panel(img, tags, "cap"), {i: f"details {i}" for i in range(6)},
                              font_frac=0.2, selected=2)
    assert html_.count("class='uv-hit") == 6 and "uv-hit-selected' data-pick='2'" in html_
    assert "details 5" in html_ and "more tag" in html_ and html_.startswith("<div class='uv-pane' id='pane-a'")


def test_reason_words_offline_and_one_css_table():
    assert Reason.CLIP_SCORE.words(True) == "CLIP score"
    assert Reason.CLIP_SCORE.words(False) == "similarity to the closest example"
    assert all(Reason(r).words(False) != "CLIP score" for r in Reason)
    css = reason_css()
    for r in Reason:
        assert f".uv-{r.key} {{background:{r.hex}}}" in css


def test_timeline_runs_and_filters():
    assert timeline._runs(np.array([3, 4, 5, 9, 10, 2])) == [(2, 5), (9, 10)]
    assert timeline._runs(np.array([], int)) == []


def test_history_words():
    assert curation.action_words("reject", {"frame": 57, "index": 3}) == "rejected instance 3 of frame 57"
    assert curation.action_words("relabel", {"frame": 2, "index": 0, "label": "dog"}) == \
        "relabelled instance 0 of frame 2 as dog"
    assert "6 instances (track" in curation.action_words("accept", {"items": [[1, 0]] * 6, "scope": "track"})
    assert curation.action_words("split", {"at": [9, 1]}).startswith("split the track before frame 9")


def test_page_commands_are_validated():
    assert parse_command('{"op": "pick", "index": 2}') == {"op": "pick", "index": 2}
    with pytest.raises(Exception, match="unreadable"):
        parse_command("{nope")
    with pytest.raises(Exception, match="op"):
        parse_command("[1]")


def test_one_wrapper_turns_an_error_into_a_warning_and_leaves_outputs_alone():
    with gr.Blocks() as demo:
        ctx = Context(ctrl=None)  # type: ignore[arg-type]
        ctx.add("notice", gr.HTML())
        a, b, btn = gr.Textbox(), gr.Textbox(), gr.Button()

        def fails(x):
            raise BadInputError("select an instance first")

        def ok(x):
            return x, x + "!", "saved"

        dep_fail = on(ctx, btn.click, fails, [a], [a, b])
        dep_ok = on(ctx, btn.click, ok, [a], [a, b])
    wrapped_fail = demo.fns[dep_fail["id"]].fn  # what Gradio calls for the event
    wrapped_ok = demo.fns[dep_ok["id"]].fn
    out = wrapped_fail("x")
    assert len(out) == 3 and all(isinstance(v, type(gr.skip())) for v in out[:2])
    assert "select an instance first" in out[2] and "uv-warn" in out[2]
    assert wrapped_ok("x") == ("x", "x!", notice_html("saved"))


def test_export_refuses_while_settings_are_pending():
    from app.handlers import DecisionSettings

    cfg = Config().replace(embedder__backend="efficientnet")

    class Ctrl:
        run_config = cfg

    vals = DecisionSettings.from_config(cfg).values()
    shown = ViewState(shown_config=cfg.to_json())
    assert export.shown_config(Ctrl, shown, vals).to_json() == cfg.to_json()  # type: ignore[arg-type]
    changed = list(vals)
    changed[4] = 0.9  # the label-score threshold typed but not applied
    with pytest.raises(BadInputError, match="settings pending"):
        export.shown_config(Ctrl, shown, tuple(changed))  # type: ignore[arg-type]
    assert json.loads(cfg.to_json())["filters"]["clip_threshold"] == 0.7
