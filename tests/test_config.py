import json

import pytest

from uvis.config import DEFAULT_TEMPLATES, Config, display_name, load_preset, vocabulary_presets
from uvis.errors import ConfigError


def test_defaults_follow_design():
    c = Config().validate()
    assert (c.filters.objectness_threshold, c.filters.clip_threshold, c.filters.pmf_threshold) == (0.7, 0.7, 0.7)
    assert c.filters.pmf_k == 8 and c.filters.pmf_min_members == 3
    assert (c.tracker.memory_lambda, c.tracker.embedding_weight, c.tracker.max_cost, c.tracker.max_gap) == (
        0.7, 0.5, 0.6, 10)
    assert c.embedder.crop_padding == 0.1 and len(c.labeler.templates) == 7
    assert c.labeler.templates[0] == "a photo of {}" and c.labeler.vocabulary == load_preset("ytvis2019")
    assert len(c.prompts()) == 40 * 7 and "a photo of earless seal at" in c.prompts()


def test_presets():
    p = vocabulary_presets()
    assert len(p["ytvis2019"]) == 40 and len(p["ytvis2021"]) == 40 and len(p["ovis"]) == 25
    assert p["ytvis2019"][0] == "person" and p["ytvis2019"][-1] == "tennis_racket"
    assert "vehical" in p["ovis"] and "flying_disc" in p["ytvis2021"]
    assert display_name("tennis_racket") == "tennis racket"
    with pytest.raises(ConfigError, match="unknown vocabulary preset 'nope'"):
        load_preset("nope")


@pytest.mark.parametrize("patch, message", [
    ({"filters": {"clip_threshold": 1.5}}, "filters.clip_threshold must be in [0, 1], got 1.5"),
    ({"filters": {"objectness_threshold": -0.1}}, "filters.objectness_threshold must be in [0, 1]"),
    ({"labeler": {"vocabulary": []}}, "labeler.vocabulary must be a non-empty list"),
    ({"labeler": {"vocabulary": ["cat", "dog", "cat"]}}, "duplicate class names: cat"),
    ({"labeler": {"templates": ["a photo"]}}, "must contain '{}' exactly once"),
    ({"filters": {"clip_threshold_per_class": {"unicorn": 0.5}}}, "names 'unicorn', which is not in"),
    ({"filters": {"pmf_k": 0}}, "filters.pmf_k must be in [1, 256]"),
    ({"tracker": {"max_gap": "x"}}, "tracker.max_gap must be an integer"),
    ({"labeler": {"prompt_pooling": "median"}}, "labeler.prompt_pooling must be one of max, mean"),
    ({"filters": {"bogus": 1}}, "unknown config key(s) filters.bogus"),
])
def test_validation_messages(patch, message):
    with pytest.raises(ConfigError) as err:
        Config.from_dict(patch)
    assert message in str(err.value)


def test_save_load_yaml_and_json(tmp_path):
    c = Config().replace(filters__clip_threshold=0.55, labeler__vocabulary=["cat", "dog"])
    for suffix in (".yaml", ".json"):
        path = c.save(tmp_path / f"cfg{suffix}")
        assert Config.load(path) == c
    (tmp_path / "partial.yaml").write_text("filters:\n  pmf_k: 4\n")
    assert Config.load(tmp_path / "partial.yaml").filters.pmf_k == 4
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot parse config file"):
        Config.load(tmp_path / "bad.json")
    assert json.loads(c.to_json())["filters"]["clip_threshold"] == 0.55
    assert DEFAULT_TEMPLATES[2] == "a photo of {} moving"


def test_prompts_memo_follows_vocabulary_and_template_edits():
    cfg = Config().replace(labeler__vocabulary=["earless_seal", "cat"], labeler__templates=["a {}", "{} here"])
    first = cfg.prompts()
    assert first == ["a earless seal", "earless seal here", "a cat", "cat here"]
    first.append("mutated by a caller")
    assert cfg.prompts() == ["a earless seal", "earless seal here", "a cat", "cat here"]
    cfg.labeler.vocabulary = ["dog"]  # edited in place: the memo must not answer for the old vocabulary
    assert cfg.prompts() == ["a dog", "dog here"]
    cfg.labeler.templates = ["{}"]
    assert cfg.prompts() == ["dog"]
    assert cfg.replace(labeler__vocabulary=["cow"]).prompts() == ["cow"] and cfg.prompts() == ["dog"]
    assert "_prompts_memo" not in json.dumps(cfg.to_dict())  # never saved with the results
