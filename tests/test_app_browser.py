"""End to end: ``launch.py`` in a subprocess, driven by Playwright in Debian Chromium.

The app runs on the bundled example (first 40 frames) with the motion proposer and the
tiny random CLIP (``uvis-tiny-vit``, so labels are meaningless but every code path is
the real one), in a temporary workspace, on a free 127.0.0.1 port. The tests share
one server but not their state: each page starts from the same saved settings
(:func:`reset_workspace_settings`) and each test curates its own frames and asserts
changes relative to what it saw first, so any test passes alone or in any order (the
restart test restarts the server and waits for it). Screenshots go to
``test-artifacts/``.
"""
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
MAX_FRAMES = 40
APP_ARGS = ["--max-frames", str(MAX_FRAMES), "--proposer", "motion", "--embedder", "clip",
            "--clip-model", "uvis-tiny-vit", "--clip-pretrained", "none", "--quiet"]
TIMEOUT_MS = 120_000

if not CHROMIUM.exists():
    pytest.skip("Debian chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``launch.py`` as a subprocess on 127.0.0.1 (output in ``<workspace>/../app-*.log``)."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.port = _free_port()
        self.fiftyone_port = _free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.starts += 1
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", UVIS_OFFLINE="1",
                   FIFTYONE_DO_NOT_TRACK="true", PYTHONUNBUFFERED="1")
        log = open(self.workspace.parent / f"app-{self.starts}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "launch.py"), "--workspace", str(self.workspace), "--host", "127.0.0.1",
             "--port", str(self.port), "--fiftyone-port", str(self.fiftyone_port), *APP_ARGS],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"launch.py exited with {self.proc.returncode}: {self.log_text()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise RuntimeError(f"the app did not answer on {self.url}: {self.log_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log_text(self) -> str:
        path = self.workspace.parent / f"app-{self.starts}.log"
        return path.read_text()[-3000:] if path.is_file() else ""


def wait_labelled(workspace: Path, timeout_s: float = 900) -> None:
    """Block until the workspace database says the example is fully labelled."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        db_path = workspace / "uvis.sqlite"
        if db_path.is_file():
            db = sqlite3.connect(str(db_path), timeout=10)
            try:
                rows = db.execute("SELECT status FROM videos").fetchall()
            except sqlite3.OperationalError:
                rows = []
            finally:
                db.close()
            if rows and all(r[0] == "done" for r in rows):
                return
        time.sleep(0.5)
    raise AssertionError("the example was not labelled in time")


def share_fiftyone_database() -> None:
    """Connect this process to FiftyOne's database first, so the app subprocess inherits the
    port (``FIFTYONE_PRIVATE_DATABASE_PORT``) and both surely use the same database.

    FiftyOne otherwise attaches to *any* running database service of the user, whatever
    its database folder, so on a machine where other FiftyOne processes run, two
    processes could end up on different databases."""
    try:
        import fiftyone as fo
    except ImportError:
        return
    fo.list_datasets()
    assert os.environ.get("FIFTYONE_PRIVATE_DATABASE_PORT"), "FiftyOne did not publish its database port"


def reset_workspace_settings(workspace: Path) -> None:
    """Every test starts from the same decision settings (threshold on the label score 0,
    so the random tiny CLIP keeps instances): saved as the workspace's latest config,
    which a new page loads. This is what keeps the tests independent of each other."""
    from uvis.config import Config
    from uvis.workspace import Workspace

    ws = Workspace(workspace)
    try:
        latest = ws.db.latest_config()
        base = Config.from_dict(json.loads(latest[1])) if latest else Config()
        ws.db.save_config(base.replace(filters__clip_threshold=0.0, filters__objectness_threshold=0.7,
                                       filters__clip_threshold_per_class={},
                                       labeler__vocabulary=list(Config().labeler.vocabulary)).to_json(),
                          note="test reset")
    finally:
        ws.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    share_fiftyone_database()
    ws = tmp_path_factory.mktemp("app") / "workspace"
    srv = AppServer(ws)
    srv.start()
    wait_labelled(ws)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, server, width: int = 1600, height: int = 1000):
    reset_workspace_settings(server.workspace)
    pg = browser.new_page(viewport={"width": width, "height": height})
    pg.set_default_timeout(TIMEOUT_MS)
    pg.goto(server.url)
    pg.wait_for_selector("#counts:has-text('kept')")  # the example is labelled and shown
    pg.wait_for_selector("#pane-a .uv-img")
    return pg


@pytest.fixture
def page(browser, server):
    pg = open_page(browser, server)
    yield pg
    pg.close()


# ----------------------------------------------------------------------------- helpers
def md(elem_id: str) -> str:
    """Selector of a Markdown component's text (without its status/timer overlay)."""
    return f"#{elem_id} [data-testid=markdown]"


def counts(pg) -> tuple[int, int, int]:
    """(kept, dropped, dropped by the label score) of the video, as shown."""
    text = pg.inner_text(md("counts"))
    kept = int(re.search(r"kept (\d+) / dropped", text).group(1))
    dropped = int(re.search(r"dropped (\d+) of", text).group(1))
    clip = int(re.search(r"CLIP score (\d+)", text).group(1))
    return kept, dropped, clip


def user_rejects(pg) -> int:
    return int(re.search(r"user reject (\d+)", pg.inner_text(md("counts"))).group(1))


def shown_frame(pg) -> int:
    return int(re.search(r"frame (\d+):", pg.inner_text(md("counts"))).group(1))


def notice(pg) -> str:
    """The notice area's text ('' when empty), read in one step (it may change meanwhile)."""
    return pg.evaluate("() => { const e = document.querySelector('#notice-text'); return e ? e.innerText : ''; }")


def wait_notice(pg, pattern: str, timeout_s: float = 60) -> str:
    return wait_until(lambda: re.search(pattern, notice(pg)) and notice(pg), f"notice matching {pattern!r}",
                      timeout_s)


def set_number(pg, elem_id: str, value: float) -> None:
    """Type into a slider's number box and leave it."""
    box = pg.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.blur()


def wait_text_change(pg, selector: str, old: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = pg.inner_text(selector)
        if text != old:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{selector} did not change from {old!r}")


def wait_until(fn, what: str, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def go_to_frame(pg, t: int, timeout_s: float = 60) -> None:
    if shown_frame(pg) == t:
        return
    set_number(pg, "frame-slider", t)
    wait_until(lambda: shown_frame(pg) == t, f"the view on frame {t}", timeout_s)
    pg.wait_for_selector(f".uv-canvas[data-frame='{t}']")


def card(pg) -> str:
    return pg.evaluate("() => { const e = document.querySelector('#instance-card'); return e ? e.innerText : ''; }")


def select_instance(pg, index: int) -> None:
    pg.locator(f"#pane-a .uv-hit[data-pick='{index}']").click(force=True)
    wait_until(lambda: f"instance #{index}" in card(pg), f"instance #{index} selected")


def workspace_result(server):
    """The bundled example's decisions under the workspace's latest saved settings, computed
    independently of the app (a fresh project from the workspace)."""
    from uvis.config import Config
    from uvis.pipeline import open_project
    from uvis.workspace import Workspace

    ws = Workspace(server.workspace)
    try:
        cfg = Config.from_dict(json.loads(ws.db.latest_config()[1]))
        return open_project(ws).decide(cfg)["vtest_150"]
    finally:
        ws.close()


def tracked_frame(pg, server) -> tuple[int, int, int]:
    """(frame, index, track) of a kept, tracked instance whose track spans >= 3 frames,
    from the workspace's decisions under the reset settings."""
    res = workspace_result(server)
    inst = res.instances
    tr = max(res.tracks, key=lambda t: t.length)
    assert tr.length >= 3
    t = tr.first_frame
    rows = np.flatnonzero(inst.frame == t)
    index = int(np.flatnonzero(inst.track_id[rows] == tr.track_id)[0])
    return t, index, tr.track_id


def open_tab(pg, name: str) -> None:
    """Open a right-hand tab, through the "More tabs" menu when it does not fit the row."""
    tab = pg.locator(f"#tabs [role=tab]:text-is('{name}')")
    if not tab.first.is_visible():
        pg.locator("#tabs button[aria-label='More tabs']").click()
        pg.locator(f"#tabs button:text-is('{name}')").last.click()
    else:
        tab.first.click()


def screenshot(pg, name: str, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


def rect(pg, selector: str) -> dict:
    return pg.locator(selector).first.bounding_box()


# ----------------------------------------------------------------------------- 1. viewing
def test_1280x720_shows_four_panels_and_curation_controls_without_scrolling(browser, server):
    pg = open_page(browser, server, 1280, 720)
    try:
        for k in "abcd":
            box = rect(pg, f"#pane-{k} .uv-img")
            assert box["width"] >= 300, f"panel {k} is only {box['width']:.0f} px wide"
            assert box["y"] >= 0 and box["y"] + box["height"] <= 720, f"panel {k} is below the fold"
        for sel in ("#accept", "#reject", "#relabel", "#relabel-choice", "#undo", "#track-mode", "#frame-slider"):
            box = rect(pg, sel)
            assert box["y"] + box["height"] <= 720 and box["x"] + box["width"] <= 1280, f"{sel} not visible"
        assert pg.evaluate("() => window.scrollY") == 0
        screenshot(pg, "app-1280x720.png")
        assert "proposer: motion" in pg.inner_text("#backend-banner")
    finally:
        pg.close()


def test_tags_never_overlap_or_clip_and_hover_shows_details(page):
    go_to_frame(page, 20)
    for k in "abcd":
        stage = rect(page, f"#pane-{k} .uv-stage")
        tags = [t.bounding_box() for t in page.locator(f"#pane-{k} .uv-tag").all()]
        for t in tags:
            assert t["x"] >= stage["x"] - 0.5 and t["x"] + t["width"] <= stage["x"] + stage["width"] + 0.5
            assert t["y"] >= stage["y"] - 0.5 and t["y"] + t["height"] <= stage["y"] + stage["height"] + 0.5
        for i, a in enumerate(tags):
            for b in tags[i + 1:]:
                overlap_x = min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"])
                overlap_y = min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"])
                assert overlap_x <= 0.5 or overlap_y <= 0.5, f"tags overlap in panel {k}: {a} {b}"
    assert page.locator("#pane-a .uv-tag").count() >= 1
    hit = page.locator("#pane-c .uv-hit[data-pick='0']")
    tip = hit.locator(".uv-tip")
    assert not tip.is_visible()
    hit.hover(force=True)
    text = tip.inner_text()
    assert tip.is_visible()
    for word in ("#0", "top-5", "objectness", "track"):
        assert word in text


def test_selection_highlighted_in_every_panel_and_follows_its_track(page, server):
    t, index, track = tracked_frame(page, server)
    go_to_frame(page, t)
    select_instance(page, index)
    assert f"track T{track}" in card(page)
    for k in "abcd":  # every panel marks the same instance
        assert page.locator(f"#pane-{k} .uv-hit-selected[data-pick='{index}']").count() == 1
    page.keyboard.press("ArrowRight")
    wait_until(lambda: shown_frame(page) == t + 1, "the next frame")
    wait_until(lambda: f"track T{track}" in card(page), "the selection following its track")
    assert page.locator("#pane-d .uv-hit-selected").count() == 1


def test_focus_view_at_full_resolution_zooms_and_one_canvas_toggles_layers(page):
    grid_w = page.evaluate("() => document.querySelector('#pane-c .uv-img').naturalWidth")
    page.locator("#view-mode input").click()
    page.get_by_role("option", name="focus (c)").click()
    page.wait_for_selector(".uv-focus .uv-focus-main #pane-c")
    big = page.evaluate("() => document.querySelector('.uv-focus-main .uv-img').naturalWidth")
    assert big > grid_w
    assert rect(page, ".uv-focus-main .uv-img")["width"] > 2 * rect(page, ".uv-focus-side .uv-img")["width"]
    zoom = page.locator(".uv-focus-main .uv-zoom")
    zoom.hover()
    page.mouse.wheel(0, -300)
    wait_until(lambda: "scale(1.25" in (page.evaluate(
        "() => document.querySelector('.uv-focus-main .uv-stage').style.transform") or ""), "zoomed in")
    page.locator("#view-mode input").click()
    page.get_by_role("option", name="one canvas").click()
    page.wait_for_selector(".uv-single #pane-canvas")
    page.wait_for_selector("#layers", state="visible")
    tags_all = page.locator("#pane-canvas .uv-tag").first.inner_text()
    page.locator("#layers label:has-text('label scores')").click()
    page.wait_for_selector("#pane-canvas .uv-pane-title:not(:has-text('label scores'))")
    assert page.locator("#pane-canvas .uv-tag").first.inner_text() != tags_all
    screenshot(page, "app-one-canvas.png")


# ----------------------------------------------------------------------------- 2. timeline
def test_timeline_click_jumps_to_the_frame_and_selects_the_track(page, server):
    t, index, track = tracked_frame(page, server)
    go_to_frame(page, 0 if t > 0 else 5)
    lane = page.locator(f"#timeline-svg g[data-track='{track}'] rect").nth(1)  # the track's first run
    box = lane.bounding_box()
    page.mouse.click(box["x"] + 1, box["y"] + box["height"] / 2)
    wait_until(lambda: f"track T{track}" in card(page), f"track T{track} selected from the timeline")
    assert abs(shown_frame(page) - t) <= 1
    assert page.locator(f"#timeline-svg g.uv-tl-selected[data-track='{track}']").count() == 1
    # filters: a minimum length above every track's length empties the lanes
    n_before = page.locator("#timeline-svg g.uv-lane").count()
    assert n_before >= 1
    set_number(page, "tl-min", 50)
    wait_until(lambda: page.locator("#timeline-svg g.uv-lane").count() == 0, "no lane at minimum length 50")
    assert "0 of" in page.inner_text("#timeline-summary")


# ----------------------------------------------------------------------------- 6. history
def test_history_lists_actions_in_words_jumps_and_reverts(page):
    go_to_frame(page, 31)
    select_instance(page, 0)
    page.click("#reject")
    wait_notice(page, r"rejected instance 0 of frame 31")
    open_tab(page, "History")
    item = page.locator("#history-list li").first
    assert "rejected instance 0 of frame 31" in item.inner_text()
    go_to_frame(page, 2)
    item.locator("[data-op='hjump']").click()
    wait_until(lambda: shown_frame(page) == 31, "the history jump to frame 31")
    rejected = user_rejects(page)
    assert rejected >= 1
    page.locator("#history-list li").first.locator("[data-op='revert']").click()
    wait_notice(page, r"reverted: rejected instance 0 of frame 31")
    wait_until(lambda: user_rejects(page) == rejected - 1, "the reject reverted in the counts")
    assert "uv-undone" in (page.locator("#history-list li").first.get_attribute("class") or "")


# ----------------------------------------------------------------------------- 7. keyboard
def test_keyboard_only_labelling_of_a_track(page, server):
    t, index, track = tracked_frame(page, server)
    go_to_frame(page, t)
    page.locator("body").click(position={"x": 5, "y": 5})
    for k in range(index + 1):  # ] selects the next instance of the frame
        page.keyboard.press("]")
        wait_until(lambda: f"instance #{k}" in card(page), f"instance #{k} selected by key")
    page.keyboard.press("r")
    page.keyboard.type("zebra_crossing")
    page.keyboard.press("Enter")
    wait_notice(page, rf"relabelled instance {index} of frame {t} as zebra_crossing")
    page.locator("body").click(position={"x": 5, "y": 5})
    for step in (1, 2):  # → moves on (the selection follows the track), 1 repeats the last class
        page.keyboard.press("ArrowRight")
        wait_until(lambda: shown_frame(page) == t + step and f"track T" in card(page), "the next frame")
        page.keyboard.press("1")
        wait_notice(page, rf"frame {t + step} as zebra_crossing")
    assert page.inner_text("#selected-label") == "zebra_crossing"
    page.keyboard.press("Control+z")
    wait_notice(page, r"undid: relabelled")
    page.keyboard.press("Control+Shift+z")
    wait_notice(page, r"redid: relabelled")
    page.keyboard.press("?")
    assert page.locator("#keys-overlay").is_visible()
    assert "Ctrl+Shift+Z" in page.inner_text("#keys-overlay")
    page.keyboard.press("Escape")
    assert not page.locator("#keys-overlay").is_visible()


# ----------------------------------------------------------------------------- 10. thin shell
def test_accept_without_selection_warns_and_leaves_the_page_intact(page, server):
    go_to_frame(page, 12)
    before = {sel: page.inner_text(sel) for sel in (md("counts"), "#timeline-summary")}
    src = page.locator("#pane-a .uv-img").get_attribute("src")
    for button in ("#accept", "#reject", "#relabel"):
        page.click(button)
        wait_notice(page, r"select an instance first")
        assert page.locator("#notice .uv-warn").count() == 1
    assert page.locator(".toast-body, [data-testid=toast-body]").count() == 0  # no stacked toasts
    assert page.locator("#canvas .error, .error-text").count() == 0  # no red error badge
    for sel, text in before.items():
        assert page.inner_text(sel) == text
    assert page.locator("#pane-a .uv-img").get_attribute("src") == src
    assert "didn't return enough output values" not in server.log_text()
    page.keyboard.press("ArrowRight")  # and the page still works
    wait_until(lambda: shown_frame(page) == 13, "frame 13")
    assert notice(page) == ""  # the next successful action clears the warning


# ----------------------------------------------------------------------------- 9. words
def test_every_setting_has_a_tooltip_with_its_default(page):
    for elem in ("objectness-threshold", "clip-threshold", "pmf-threshold", "pmf-k", "lambda", "weight-w",
                 "max-cost", "pmf-on", "vocabulary", "templates", "per-class"):
        text = page.inner_text(f"#{elem}")
        assert "Default" in text, f"{elem} has no default in its tooltip: {text!r}"


# ----------------------------------------------------------------------------- issue 9: shown = used
def test_keyboard_slider_change_redecides_and_export_uses_the_shown_config(page, server):
    kept0 = counts(page)[0]
    rng = page.locator("#clip-threshold input[type=range]")
    rng.focus()
    for _ in range(30):  # 0.00 -> 0.30 by arrow keys alone
        page.keyboard.press("ArrowRight")
    wait_until(lambda: page.input_value("#clip-threshold input[type=number]") == "0.3", "the slider at 0.3")
    wait_until(lambda: counts(page)[2] > 0, "instances dropped by the score after the keyboard change")
    kept_key = counts(page)[0]
    assert kept_key < kept0
    # a typed value + Enter applies too
    box = page.locator("#clip-threshold input[type=number]")
    box.fill("0.05")
    box.press("Enter")
    wait_until(lambda: counts(page)[0] > kept_key, "the typed threshold applied")
    kept_typed = counts(page)[0]
    # the export writes exactly what the view shows
    open_tab(page, "Export")
    page.click("#export-ytvis")
    page.wait_for_selector("#export-msg:has-text('wrote ytvis-')")
    name = re.search(r"(ytvis-[0-9-]+\.json)", page.inner_text(md("export-msg"))).group(1)
    data = json.loads((server.workspace / "exports" / name).read_text())
    n_masks = sum(sum(1 for s in a["segmentations"] if s) for a in data["annotations"])
    assert n_masks == kept_typed
    # an edited text setting not applied yet: the page says so until it applies (on leaving the box)
    open_tab(page, "Settings")
    page.locator("#per-class textarea").press_sequentially("person: 0.9")  # typed, as a person does
    page.wait_for_selector("#settings-pending")
    page.locator("#per-class textarea").blur()
    page.wait_for_selector("#settings-pending", state="detached")


# ----------------------------------------------------------------------------- persistence, uploads, files
def test_relabel_persists_after_restart(browser, server):
    page = open_page(browser, server)
    try:
        go_to_frame(page, 20)
        select_instance(page, 0)
        page.locator("#relabel-choice input").fill("giraffe")
        page.locator("#relabel-choice input").press("Enter")
        wait_notice(page, r"relabelled instance 0 of frame 20 as giraffe")
        assert page.inner_text("#selected-label") == "giraffe"
    finally:
        page.close()
    server.stop()
    server.start()
    pg = open_page(browser, server)
    try:
        wait_until(lambda: shown_frame(pg) == 20, "the remembered frame 20 after the restart")
        select_instance(pg, 0)
        assert pg.inner_text("#selected-label") == "giraffe"
        assert "curated by you" in card(pg)
    finally:
        pg.close()


def test_corrupt_upload_gives_message_and_app_keeps_working(page, server, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(os.urandom(50_000))
    open_tab(page, "Jobs")
    page.set_input_files("#upload input[type=file]", str(bad))
    msg = wait_notice(page, r"broken\.mp4")
    assert "cannot be opened as a video" in msg
    assert str(server.workspace) not in msg  # no server paths in the message
    assert not list((server.workspace / "uploads").glob("broken*"))  # nothing stored
    old_t = shown_frame(page)
    page.click("#next-frame")
    wait_until(lambda: shown_frame(page) == (old_t + 1) % MAX_FRAMES, "the next frame")


def test_server_serves_no_file_outside_workspace_and_assets(server):
    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(server.url + "gradio_api/file=" + path, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status("/etc/passwd") in (403, 404)
    assert status(str(REPO / "launch.py")) in (403, 404)
    assert status(str(server.workspace / "uvis.sqlite")) in (403, 404)
    assert status(str(REPO / "assets" / "examples" / "vtest_150.mp4")) == 200


def test_export_to_fiftyone_matches_kept_instances(page, server):
    import fiftyone as fo

    name = f"uvis-browser-test-{os.getpid()}-{int(time.time())}"
    try:
        _export_and_check(page, server, fo, name)
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def _export_and_check(page, server, fo, name: str) -> None:
    # this test's own relabel (independent of the others)
    go_to_frame(page, 25)
    select_instance(page, 0)
    page.locator("#relabel-choice input").fill("okapi")
    page.click("#relabel")
    wait_notice(page, r"relabelled instance 0 of frame 25 as okapi")
    open_tab(page, "Export")
    page.locator("#dataset-name input, #dataset-name textarea").first.fill(name)
    page.click("#export-fiftyone")
    page.wait_for_selector("#export-msg:has-text('exported')", timeout=300_000)
    kept_shown = counts(page)[0]
    assert f"{kept_shown} kept instances" in page.inner_text(md("export-msg"))

    from uvis.types import Reason

    result = workspace_result(server)
    inst = result.instances
    kept = inst.decision == Reason.KEPT
    assert int(kept.sum()) == kept_shown
    ds = fo.load_dataset(name)
    assert len(ds) == 1
    sample = ds.first()
    per_frame, own_labels = {}, []
    for t, frame in sample.frames.items():
        dets = frame["pseudo_labels"].detections if frame["pseudo_labels"] is not None else []
        per_frame[t - 1] = len(dets)
        own_labels += [d["instance_label"] for d in dets]
    expected = {t: int((kept & (inst.frame == t)).sum()) for t in range(result.info.num_frames)}
    assert {t: n for t, n in per_frame.items() if n} == {t: n for t, n in expected.items() if n}
    assert "okapi" in own_labels

    # a second export under the same name is refused until overwrite (or append) is chosen
    page.click("#export-fiftyone")
    msg = wait_notice(page, r"already exists")
    assert "overwrite" in msg and "append" in msg
    page.locator("#dataset-mode label:has-text('overwrite')").click()
    page.click("#export-fiftyone")
    wait_until(lambda: notice(page) == "", "the overwrite export done (its success clears the warning)", 300)
    assert "exported" in page.inner_text(md("export-msg"))
    assert len(fo.load_dataset(name)) == 1

    # "open in FiftyOne" starts the App on 127.0.0.1 and links to the dataset
    page.click("#open-fiftyone")
    link = page.wait_for_selector("#fiftyone-link", timeout=180_000)
    url = link.get_attribute("href")
    assert url.startswith(f"http://127.0.0.1:{server.fiftyone_port}/datasets/")
    with urllib.request.urlopen(f"http://127.0.0.1:{server.fiftyone_port}/fiftyone", timeout=20) as r:
        assert json.loads(r.read())["version"] == fo.constants.VERSION


# ----------------------------------------------------------------------------- 8. jobs and data status
def test_cancelled_job_shows_its_badge_and_resumes(page, server):
    import cv2

    names = []
    for k in range(2):  # two new videos: the second waits in the queue while the first is labelled
        video = server.workspace / f"moving_box_{os.getpid()}_{time.monotonic_ns()}_{k}.avi"
        wr = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
        for t in range(MAX_FRAMES):
            img = np.full((240, 320, 3), 90, np.uint8)
            cv2.rectangle(img, (10 + 5 * t, 60 + 20 * k), (60 + 5 * t, 140 + 20 * k), (30, 200, 60), -1)
            wr.write(img)
        wr.release()
        names.append(video.name)
    open_tab(page, "Jobs")
    jobs = []
    for name in names:
        page.locator("#video-path input, #video-path textarea").first.fill(name)
        page.click("#add-path")
        msg = wait_notice(page, rf"queued job (\d+): {re.escape(Path(name).stem)}")
        jobs.append(int(re.search(r"queued job (\d+)", msg).group(1)))
    page.locator("#job-id input").fill(str(jobs[1]))
    page.click("#cancel-job")
    wait_until(lambda: page.locator(f"#job-{jobs[1]} .uv-badge-cancelled").count() == 1,
               "the cancelled badge of the queued job", 120)
    assert "cancelled before it started" in page.inner_text(f"#job-{jobs[1]}")  # the full message
    page.click("#retry-job")
    msg = wait_notice(page, r"job (\d+) resumes")
    new = int(re.search(r"job (\d+) resumes", msg).group(1))
    wait_until(lambda: page.locator(f"#job-{new} .uv-badge-done").count() == 1, "the resumed job done", 400)
