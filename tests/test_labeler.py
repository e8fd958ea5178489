import numpy as np
import pytest

from uvis.labeler import match_exemplars, match_prompts
from uvis.text_cache import TextEmbeddingCache


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_closest_prompt_wins_and_softmax_score():
    # 2 classes x 2 templates in 3-D.
    text = _unit([[[1, 0, 0], [0.6, 0.8, 0]], [[0, 0, 1], [0, 0.8, 0.6]]])
    q = _unit([[0.1, 1.0, 0.05]])  # closest single prompt: class 0 template 1 (0.6,0.8,0)
    s = match_prompts(q, text, logit_scale=100.0, pooling="max")
    sims = q @ text.reshape(4, 3).T
    assert s.best_prompt[0] == int(np.argmax(sims)) == 1
    assert s.label[0] == 0
    class_sim = sims.reshape(2, 2).max(axis=1)
    expected = np.exp(100 * class_sim) / np.exp(100 * class_sim).sum()
    assert s.clip_score[0] == pytest.approx(expected[0], rel=1e-5)
    assert s.probs[0].sum() == pytest.approx(1.0)
    classes, probs = s.top_k(5)
    assert classes.shape == (1, 2) and classes[0, 0] == 0 and probs[0, 0] >= probs[0, 1]


def test_mean_pooling_can_disagree_with_max():
    # class 0 has one very close template and one far; class 1 two moderately close.
    text = _unit([[[1, 0, 0], [-1, 0.2, 0]], [[0.8, 0.6, 0], [0.8, -0.6, 0]]])
    q = _unit([[0.95, 0.05, 0]])
    assert match_prompts(q, text, 100, "max").label[0] == 0
    mean = match_prompts(q, text, 100, "mean")
    assert mean.label[0] == 1 and mean.best_prompt[0] in (2, 3)


def test_empty_and_bad_pooling():
    text = _unit(np.random.default_rng(0).normal(size=(3, 2, 4)))
    s = match_prompts(np.zeros((0, 4), np.float32), text, 100)
    assert s.label.shape == (0,) and s.probs.shape == (0, 3)
    with pytest.raises(ValueError):
        match_prompts(_unit([[1, 0, 0, 0]]), text, 100, "median")


def test_exemplar_matching():
    ex = _unit([[1, 0, 0], [0, 1, 0]])
    q = _unit([[0.9, 0.1, 0], [0.1, 0.9, 0.2]])
    s = match_exemplars(q, ex, np.array([2, 0]), num_classes=3)
    assert s.label.tolist() == [2, 0]
    assert s.clip_score[0] == pytest.approx(float(q[0] @ ex[0]))  # the similarity to the exemplar
    assert np.isnan(s.class_sim[0, 1]) and s.probs[0, 1] == 0
    none = match_exemplars(q, np.zeros((0, 3), np.float32), np.zeros(0, int), 3)
    assert none.label.tolist() == [-1, -1] and none.clip_score.tolist() == [0, 0]


def test_text_cache_encodes_only_new_prompts(tmp_path):
    calls = []

    def encoder(prompts):
        calls.append(list(prompts))
        rng = np.random.default_rng(len(calls))
        return _unit(rng.normal(size=(len(prompts), 8)))

    cache = TextEmbeddingCache(tmp_path, "model-a")
    first = cache.get(["a photo of cat", "a photo of dog"], encoder)
    assert cache.encoded_count == 2 and first.shape == (2, 8)
    again = cache.get(["a photo of dog", "a photo of cow", "a photo of cat"], encoder)
    assert cache.encoded_count == 3 and calls[-1] == ["a photo of cow"]
    assert np.allclose(again[2], first[0])
    # persisted: a new object encodes nothing for known prompts
    reopened = TextEmbeddingCache(tmp_path, "model-a")
    assert np.allclose(reopened.get(["a photo of cow"]), again[1]) and reopened.encoded_count == 0
    # a different model never shares entries
    other = TextEmbeddingCache(tmp_path, "model-b")
    with pytest.raises(LookupError, match="no cached text embedding for model-b"):
        other.get(["a photo of cat"])
