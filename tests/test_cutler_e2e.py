"""End to end: ``python -m uvis label VIDEO --proposer cutler --cutler-weights PATH`` on recipe weights."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from uvis.proposers.cutler.testing import write_recipe_checkpoint

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "cutler-ref"
VIDEO = REPO / "assets" / "examples" / "vtest_150.mp4"


@pytest.mark.slow
def test_label_with_cutler_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from uvis.cli import main

    if not VIDEO.is_file():
        pytest.fail(f"bundled example video missing: {VIDEO}")
    weights = write_recipe_checkpoint(tmp_path / "cutler_recipe.pth", FIXTURES / "dev_astronaut.json", seed=7)
    argv = ["label", str(VIDEO), "-w", str(tmp_path / "ws"), "--proposer", "cutler", "--cutler-weights",
            str(weights), "--min-size", "128", "--max-frames", "2", "--embedder", "efficientnet", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    m = re.search(r"vtest_150: 2 frames, (\d+) proposals", out)
    assert m is not None, out
    assert 0 < int(m.group(1)) <= 200  # at most 100 per frame


def test_label_with_missing_cutler_weights_is_a_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from uvis.cli import main

    missing = tmp_path / "absent.pth"
    argv = ["label", str(VIDEO), "-w", str(tmp_path / "ws"), "--proposer", "cutler", "--cutler-weights",
            str(missing), "--max-frames", "1", "--embedder", "efficientnet", "--quiet"]
    assert main(argv) == 2
    assert str(missing) in capsys.readouterr().err
