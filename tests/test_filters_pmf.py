import numpy as np
import pytest

from uvis.config import FilterConfig
from uvis.filters import pmf_filter, score_filter
from uvis.pmf import PrototypeMemory, spherical_kmeans
from uvis.types import Reason


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_score_filter_and_per_class_override():
    cfg = FilterConfig(clip_threshold_per_class={"dog": 0.5})
    vocab = ["cat", "dog"]
    obj = np.array([0.9, 0.6, 0.9, 0.9, 0.9], np.float32)
    clip = np.array([0.8, 0.9, 0.6, 0.6, 0.95], np.float32)
    lab = np.array([0, 0, 0, 1, -1], np.int32)
    dec, sim = score_filter(obj, clip, lab, cfg, vocab)
    assert [Reason(d).key for d in dec] == ["kept", "objectness", "clip_score", "kept", "clip_score"]
    assert sim[1] == pytest.approx(0.6) and sim[2] == pytest.approx(0.6)
    # thresholds are inclusive (>=)
    dec, _ = score_filter(np.array([0.7], np.float32), np.array([0.7], np.float32), np.array([0]),
                          FilterConfig(), vocab)
    assert dec[0] == Reason.KEPT


def test_kmeans_finds_clusters():
    rng = np.random.default_rng(1)
    a = _unit(np.array([1, 0, 0]) + 0.05 * rng.normal(size=(20, 3)))
    b = _unit(np.array([0, 1, 0]) + 0.05 * rng.normal(size=(20, 3)))
    cent = spherical_kmeans(np.concatenate([a, b]).astype(np.float32), 2, 10, np.random.default_rng(0))
    assert cent.shape == (2, 3)
    assert sorted(np.argmax(cent, axis=1).tolist()) == [0, 1]
    assert np.allclose(np.linalg.norm(cent, axis=1), 1)
    assert spherical_kmeans(a[:2].astype(np.float32), 8, 5, np.random.default_rng(0)).shape == (2, 3)  # K <= members


def test_pmf_rule_reasons_min_members_and_exemplars():
    rng = np.random.default_rng(0)
    cat_members = _unit(np.array([1, 0, 0, 0]) + 0.05 * rng.normal(size=(10, 4)))
    dog_members = _unit(np.array([0, 1, 0, 0]) + 0.05 * rng.normal(size=(2, 4)))  # < min members
    memory = PrototypeMemory.build(np.concatenate([cat_members, dog_members]),
                                   np.array([0] * 10 + [1] * 2), k=8, seed=0)
    assert memory.member_counts == {0: 10, 1: 2} and memory.prototypes[0].shape[0] == 8
    queries = _unit([[1, 0.05, 0, 0],   # cat, near prototypes -> kept
                     [0, 0, 1, 0],      # labelled cat, far -> pmf
                     [0, 0, 1, 0],      # labelled dog, far, but dog has 2 members -> not filtered
                     [0, 0, 1, 0]])     # labelled cat but already dropped by score filter
    labels = np.array([0, 0, 1, 0])
    dec0 = np.array([Reason.KEPT, Reason.KEPT, Reason.KEPT, Reason.CLIP_SCORE], np.int8)
    sim0 = np.array([0.9, 0.9, 0.9, 0.3], np.float32)
    dec, sim, pmf_sim = pmf_filter(dec0, sim0, queries, labels, memory, FilterConfig())
    assert [Reason(d).key for d in dec] == ["kept", "pmf", "kept", "clip_score"]
    assert sim[1] == pytest.approx(pmf_sim[1]) and pmf_sim[1] < 0.7 and sim[0] >= 0.7
    assert sim[2] == pytest.approx(0.9)  # unfiltered class keeps its CLIP score as deciding value
    assert sim[3] == pytest.approx(0.3)
    expected = (queries[1] @ memory.prototypes[0].T).max()
    assert pmf_sim[1] == pytest.approx(expected)
    # a user exemplar makes dog filterable and keeps its own region kept
    ex = _unit([[0, 0, 1, 0]])
    memory2 = PrototypeMemory.build(np.concatenate([cat_members, dog_members]), np.array([0] * 10 + [1] * 2),
                                    k=8, exemplar_embeddings=ex, exemplar_labels=np.array([1]))
    assert memory2.member_counts[1] == 3
    dec2, _, _ = pmf_filter(dec0, sim0, queries, labels, memory2, FilterConfig())
    assert Reason(dec2[2]) == Reason.KEPT  # the exemplar itself is a member -> similarity 1


def test_pmf_threshold_is_inclusive_boundary():
    members = _unit(np.tile([[1, 0]], (5, 1)))
    memory = PrototypeMemory.build(members, np.zeros(5, int), k=1)
    q = _unit([[0.7, np.sqrt(1 - 0.49)], [0.69, np.sqrt(1 - 0.69 ** 2)]])
    dec, _, _ = pmf_filter(np.zeros(2, np.int8), np.ones(2, np.float32), q, np.zeros(2, int), memory,
                           FilterConfig())
    assert [Reason(d).key for d in dec] == ["kept", "pmf"]
