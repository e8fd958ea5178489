"""Shared test set-up: offline environment, temporary FiftyOne database, fixture paths."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Set before any test imports gradio / huggingface_hub / fiftyone.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("UVIS_OFFLINE", "1")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
if "FIFTYONE_DATABASE_DIR" not in os.environ:
    os.environ["FIFTYONE_DATABASE_DIR"] = tempfile.mkdtemp(prefix="uvis-fo-db-")

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
EXAMPLE_VIDEO = REPO / "assets" / "examples" / "vtest_150.mp4"


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.fail(f"shared fixtures not found at {SHARED_FIXTURES} (../shared must sit beside the repo)")
    return SHARED_FIXTURES


@pytest.fixture(scope="session")
def example_video() -> Path:
    assert EXAMPLE_VIDEO.is_file(), f"bundled example missing: {EXAMPLE_VIDEO}"
    return EXAMPLE_VIDEO
