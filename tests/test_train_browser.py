"""The Train tab in headless Chromium: start a tiny training run on the curated example, the loss
plot and the iteration count update, cancel stops it (checkpoint kept), a finished run predicts
round 2, whose video then shows in the app's video list and in the round table."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from uvis.vis.train_testing import make_curated_workspace

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, example_video):
    assert CHROMIUM.exists(), "Debian chromium is needed (apt-get install -y chromium)"
    root = tmp_path_factory.mktemp("train-app")
    ws = make_curated_workspace(root / "ws", example_video, max_frames=6)
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", UVIS_OFFLINE="1",
               FIFTYONE_DO_NOT_TRACK="true", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    log = open(root / "app.log", "w")
    proc = subprocess.Popen([sys.executable, str(REPO / "launch.py"), "--workspace", str(ws), "--host", "127.0.0.1",
                             "--port", str(port), "--fiftyone-port", str(_free_port()), "--no-example", "--quiet",
                             "--proposer", "motion", "--embedder", "efficientnet"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, (root / "app.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        assert time.monotonic() < deadline, "the app did not answer"
        time.sleep(0.5)
    yield url, ws
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _wait(fn, what: str, timeout_s: float = 180):
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_train_tab_start_plot_cancel_predict(server):
    from playwright.sync_api import sync_playwright

    url, ws = server
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        pg = b.new_page(viewport={"width": 1600, "height": 1000})
        pg.set_default_timeout(120_000)
        pg.goto(url)
        pg.wait_for_selector("#counts:has-text('kept')")
        tab = pg.locator("#tabs [role=tab]:text-is('Train')")
        if not tab.first.is_visible():  # the tab row overflows into "More tabs"
            pg.locator("#tabs button[aria-label='More tabs']").click()
            pg.locator("#tabs button:text-is('Train')").last.click()
        else:
            tab.first.click()
        status = "#train-status [data-testid=markdown]"

        def iteration() -> int:
            m = re.search(r"iteration (\d+)/", pg.inner_text(status))
            return int(m.group(1)) if m else -1

        pg.locator("#train-iters input").fill("500")
        pg.locator("#train-start").click()
        _wait(lambda: iteration() >= 2, "two iterations")
        first = iteration()
        _wait(lambda: iteration() > first + 1, "the iteration count to move on")
        _wait(lambda: pg.locator("#train-plot canvas, #train-plot svg").count() > 0, "the loss plot")
        pg.locator("#train-cancel").click()
        _wait(lambda: "cancelled" in pg.inner_text(status), "the run to be cancelled")
        assert (ws / "runs" / "run1" / "last_checkpoint").is_file()
        _wait(lambda: "iter_" in pg.inner_text("#train-ckpts"), "the checkpoint list")

        pg.locator("#train-run input").fill("run2")
        pg.locator("#train-iters input").fill("6")
        pg.locator("#train-start").click()
        _wait(lambda: "run2**" in pg.inner_html(status) or "run2" in pg.inner_text(status), "run2 to start")
        _wait(lambda: "done" in pg.inner_text(status), "run2 to finish", 300)
        assert (ws / "runs" / "run2" / "model_final.pth").is_file()

        pg.locator("#train-predict").click()
        _wait(lambda: "round 2 done" in pg.inner_text(status), "round 2", 300)
        pg.locator("#train-rounds-refresh").click()
        _wait(lambda: "run2" in pg.inner_text("#train-rounds"), "the round table")
        # the model's predictions are a workspace video now, in the video list
        pg.locator("#video-select").click()
        _wait(lambda: pg.get_by_text("vtest_150-r2").count() > 0, "the round-2 video in the video list", 60)
        b.close()
