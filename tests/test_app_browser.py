"""End to end: ``launch.py`` in a subprocess, driven by Playwright in Debian Chromium.

The app runs on the bundled example (first 40 frames) with the motion proposer and the
tiny random CLIP (``uvis-tiny-vit``, so labels are meaningless but every code path is
the real one), in a temporary workspace, on a free 127.0.0.1 port. The tests share
one server and run in order (the restart test restarts it). Screenshots of the main
view go to ``test-artifacts/``.
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


def wait_labelled(workspace: Path, timeout_s: float = 300) -> None:
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


@pytest.fixture
def page(browser, server):
    pg = browser.new_page(viewport={"width": 1700, "height": 1250})
    pg.set_default_timeout(TIMEOUT_MS)
    pg.goto(server.url)
    pg.wait_for_selector("#counts:has-text('kept')")  # the example is labelled and shown
    yield pg
    pg.close()


# ----------------------------------------------------------------------------- helpers
def md(elem_id: str) -> str:
    """Selector of a Markdown component's text (without its status/timer overlay)."""
    return f"#{elem_id} [data-testid=markdown]"


def counts(pg) -> tuple[int, int, int]:
    """(kept, dropped, dropped by CLIP score) of the video, as shown."""
    text = pg.inner_text(md("counts"))
    kept = int(re.search(r"kept (\d+) / dropped", text).group(1))
    dropped = int(re.search(r"dropped (\d+) of", text).group(1))
    clip = int(re.search(r"CLIP score (\d+)", text).group(1))
    return kept, dropped, clip


def shown_frame(pg) -> int:
    return int(re.search(r"frame (\d+):", pg.inner_text(md("counts"))).group(1))


def set_number(pg, elem_id: str, value: float) -> None:
    """Type into a slider's number box and leave it (what a release of the slider does)."""
    box = pg.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.blur()


def wait_text_change(pg, selector: str, old: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = pg.inner_text(selector)
        if text != old:
            return text
        time.sleep(0.1)
    raise AssertionError(f"{selector} did not change from {old!r}")


def wait_until(fn, what: str, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def panel_src(pg, k: str) -> str:
    return pg.locator(f"#panel-{k} img").get_attribute("src") or ""


def go_to_frame(pg, t: int, timeout_s: float = 60) -> None:
    if shown_frame(pg) == t:
        return
    set_number(pg, "frame-slider", t)
    deadline = time.monotonic() + timeout_s
    while shown_frame(pg) != t:
        assert time.monotonic() < deadline, f"the view did not move to frame {t}"
        time.sleep(0.1)


def select_row(pg, index: int) -> None:
    pg.locator(f"#instance-table [data-testid=cell-{index}-2]").click()
    pg.wait_for_selector(f"#instance-card:has-text('instance #{index}')")


def screenshot(pg, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / name), full_page=True)


# ----------------------------------------------------------------------------- tests
def test_example_loads_with_four_panels(page):
    for k in "abcd":
        img = page.locator(f"#panel-{k} img")
        img.wait_for(state="visible")
        assert page.evaluate("(e) => e.naturalWidth", img.element_handle()) >= 384
    kept, dropped, _ = counts(page)
    assert kept + dropped > 0
    assert "proposer: motion" in page.inner_text("#backend-banner")
    assert "embedder: clip" in page.inner_text("#backend-banner")
    assert len(page.locator("#instance-table [data-testid$='-0']").all()) >= 1  # a row per instance
    screenshot(page, "app-main-view.png")


def test_slider_changes_the_frame(page):
    before_t, before_src = shown_frame(page), panel_src(page, "a")
    target = 5 if before_t != 5 else 30
    go_to_frame(page, target)
    page.wait_for_function("(old) => document.querySelector('#panel-a img').src !== old", arg=before_src)
    assert shown_frame(page) == target
    old = page.inner_text(md("counts"))
    page.click("#next-frame")
    wait_text_change(page, md("counts"), old)
    assert shown_frame(page) == target + 1


def test_raising_clip_threshold_changes_counts(page):
    set_number(page, "clip-threshold", 0)
    wait_until(lambda: counts(page)[2] == 0, "no instance dropped by CLIP score at threshold 0")
    low_kept, low_dropped, _ = counts(page)
    assert low_kept > 0
    set_number(page, "clip-threshold", 0.99)
    wait_until(lambda: counts(page)[2] > 0, "instances dropped by CLIP score at threshold 0.99")
    high_kept, high_dropped, high_clip = counts(page)
    assert high_kept < low_kept and high_dropped > low_dropped
    assert high_kept + high_dropped == low_kept + low_dropped
    set_number(page, "clip-threshold", 0)  # leave the next tests instances to work with
    wait_until(lambda: counts(page)[0] == low_kept, "the counts of threshold 0 again")
    screenshot(page, "app-threshold-0.png")


def test_relabel_persists_after_restart(page, server, browser):
    go_to_frame(page, 20)
    select_row(page, 0)
    page.locator("#relabel-choice input").fill("giraffe")
    page.locator("#relabel-choice input").press("Enter")
    page.click("#relabel")
    page.wait_for_selector("#curation-msg:has-text('saved as giraffe')")
    assert page.inner_text("#selected-label") == "giraffe"
    page.wait_for_selector("#similar-table [data-testid=cell-0-2]")  # label-by-example proposals shown
    screenshot(page, "app-relabel.png")
    db = sqlite3.connect(str(server.workspace / "uvis.sqlite"))
    rows = db.execute("SELECT action, payload FROM curation").fetchall()
    items = db.execute("SELECT frame, idx, label, fingerprint, cache_key FROM curation_items").fetchall()
    db.close()
    logged = [json.loads(p) for a, p in rows if a == "relabel"]
    assert any(p["items"] == [[20, 0]] and p["label"] == "giraffe" for p in logged)
    assert any(i[:3] == (20, 0, "giraffe") and i[3] and i[4] for i in items)  # with provenance

    server.stop()
    server.start()
    pg = browser.new_page(viewport={"width": 1700, "height": 1250})
    pg.set_default_timeout(TIMEOUT_MS)
    try:
        pg.goto(server.url)
        pg.wait_for_selector("#counts:has-text('kept')")
        go_to_frame(pg, 20)
        select_row(pg, 0)
        assert pg.inner_text("#selected-label") == "giraffe"
        assert "curated by you" in pg.inner_text("#instance-card")
    finally:
        pg.close()


def test_corrupt_upload_gives_message_and_app_keeps_working(page, server, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(os.urandom(50_000))
    page.get_by_role("tab", name="Jobs").click()
    page.set_input_files("#upload input[type=file]", str(bad))
    page.wait_for_selector("#jobs-msg:has-text('broken.mp4')")
    msg = page.inner_text(md("jobs-msg"))
    assert "cannot be opened as a video" in msg
    assert str(server.workspace) not in msg  # no server paths in the message
    assert not list((server.workspace / "uploads").glob("broken*"))  # nothing stored
    old_t = shown_frame(page)
    old = page.inner_text(md("counts"))
    page.click("#next-frame")
    wait_text_change(page, md("counts"), old)
    assert shown_frame(page) == (old_t + 1) % MAX_FRAMES


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
    fo = pytest.importorskip("fiftyone")
    name = f"uvis-browser-test-{os.getpid()}-{int(time.time())}"
    try:
        _export_and_check(page, server, fo, name)
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def _export_and_check(page, server, fo, name: str) -> None:
    page.get_by_role("tab", name="Export").click()
    page.locator("#dataset-name textarea, #dataset-name input").first.fill(name)
    page.click("#export-fiftyone")
    page.wait_for_selector("#export-msg:has-text('exported')", timeout=300_000)
    kept_shown = counts(page)[0]
    assert f"{kept_shown} kept instances" in page.inner_text(md("export-msg"))

    from uvis.config import Config
    from uvis.pipeline import open_project
    from uvis.types import Reason
    from uvis.workspace import Workspace

    ws = Workspace(server.workspace)
    try:
        cfg = Config.from_dict(json.loads(ws.db.latest_config()[1]))
        result = next(iter(open_project(ws).decide(cfg).values()))
    finally:
        ws.close()
    inst = result.instances
    kept = inst.decision == Reason.KEPT
    assert int(kept.sum()) == kept_shown
    ds = fo.load_dataset(name)
    assert len(ds) == 1
    sample = ds.first()
    per_frame, labels, own_labels = {}, [], []
    for t, frame in sample.frames.items():
        dets = frame["pseudo_labels"].detections if frame["pseudo_labels"] is not None else []
        per_frame[t - 1] = len(dets)
        labels += [d.label for d in dets]
        own_labels += [d["instance_label"] for d in dets]
    expected = {t: int((kept & (inst.frame == t)).sum()) for t in range(result.info.num_frames)}
    assert {t: n for t, n in per_frame.items() if n} == {t: n for t, n in expected.items() if n}
    # a detection's label is its track's voted label (panel d), its own label is kept beside it
    votes = result.track_labels()
    tid = inst.track_id
    want = [result.vocabulary[votes.get(int(tid[r]), int(inst.label[r])) if tid[r] >= 0 else int(inst.label[r])]
            for r in np.flatnonzero(kept)]
    assert sorted(labels) == sorted(want)
    assert sorted(own_labels) == sorted(result.vocabulary[int(lbl)] for lbl in inst.label[kept])
    assert "giraffe" in own_labels  # the relabelled instance (test_relabel_persists_after_restart)

    # a second export under the same name is refused until overwrite is confirmed
    old = page.inner_text(md("export-msg"))
    page.click("#export-fiftyone")
    text = wait_text_change(page, md("export-msg"), old, timeout_s=120)
    assert "exist" in text and "overwrite" in text
    page.locator("#overwrite input").check()
    page.click("#export-fiftyone")
    page.wait_for_selector("#export-msg:has-text('exported')", timeout=300_000)
    assert len(fo.load_dataset(name)) == 1

    # "open in FiftyOne" starts the App on 127.0.0.1 and links to the dataset
    page.click("#open-fiftyone")
    link = page.wait_for_selector("#fiftyone-link", timeout=180_000)
    url = link.get_attribute("href")
    assert url.startswith(f"http://127.0.0.1:{server.fiftyone_port}/datasets/")
    with urllib.request.urlopen(f"http://127.0.0.1:{server.fiftyone_port}/fiftyone", timeout=20) as r:
        assert json.loads(r.read())["version"] == fo.constants.VERSION
