from __future__ import annotations

import numpy as np
import pytest
import torch

from featctl.errors import TrainInputError
from featctl.models import baselines as bl
from featctl.models.baselines import BASELINES, EASE, Content, ItemKNN, Pop
from featctl.models.evaluate import evaluate, metric
from featctl.models.splits import Split


def make_split(train, n_users, n_items, test=None) -> Split:
    train = np.asarray(train, dtype=np.int64).reshape(-1, 2)
    test = np.zeros((0, 2), np.int64) if test is None else np.asarray(test, dtype=np.int64).reshape(-1, 2)
    cold = np.ones(n_items, dtype=bool)
    cold[train[:, 1]] = False
    return Split("random", n_users, n_items, train, np.zeros((0, 2), np.int64), test, cold, 0)


@pytest.fixture
def small():
    rng = np.random.default_rng(7)
    n_users, n_items = 30, 20
    pairs = np.array([(u, i) for u in range(n_users) for i in range(n_items - 3) if rng.random() < 0.3])
    pairs = np.concatenate([pairs, pairs[:5]])  # duplicates count once
    return make_split(pairs, n_users, n_items)  # the last three items are cold


def dense(split):
    x = np.zeros((split.n_users, split.n_items))
    x[split.train[:, 0], split.train[:, 1]] = 1.0
    return x


USERS = np.arange(30)


def test_registry_and_contract(small):
    assert set(BASELINES) == {"pop", "itemknn", "ease", "content"}
    for name, cls in BASELINES.items():
        model = cls(np.ones((20, 4), np.float32), np.ones(20, bool)) if name == "content" else cls()
        assert model.name == name
        with pytest.raises(RuntimeError, match="fit"):
            model.scores(USERS)
        model.fit(small)
        out = model.scores(USERS[:7])
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (7, 20)


def test_pop(small):
    model = Pop()
    model.fit(small)
    counts = dense(small).sum(axis=0)
    np.testing.assert_array_equal(model.scores(np.array([3, 0])).numpy(), np.stack([counts, counts]))


@pytest.mark.parametrize("k", [1, 3, 100])
def test_itemknn_matches_dense_cosine(small, k, monkeypatch):
    x = dense(small)
    norms = np.sqrt(x.sum(axis=0))
    with np.errstate(invalid="ignore"):  # cold items: 0 / 0
        sim = (x.T @ x) / (norms[:, None] * norms[None, :])
    sim[~np.isfinite(sim)] = 0.0
    np.fill_diagonal(sim, 0.0)
    s = np.zeros_like(sim)
    for j in range(small.n_items):
        col = [i for i in sorted(range(small.n_items), key=lambda i: (-sim[i, j], i)) if sim[i, j] > 0][:k]
        s[col, j] = sim[col, j]
    expected = x @ s
    monkeypatch.setattr(bl, "BLOCK_ELEMENTS", 3 * small.n_items)  # several column blocks
    model = ItemKNN(k=k)
    model.fit(small)
    assert model.similarity.nnz == np.count_nonzero(s)
    np.testing.assert_allclose(model.scores(USERS).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_ease_matches_closed_form(small):
    x = dense(small)
    p = np.linalg.inv(x.T @ x + 250.0 * np.eye(small.n_items))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    model = EASE()
    model.fit(small)
    np.testing.assert_allclose(model.scores(USERS).numpy(), x @ b, rtol=1e-4, atol=1e-6)
    other = EASE(reg=10.0)
    other.fit(small)
    assert not np.allclose(other.scores(USERS).numpy(), model.scores(USERS).numpy())


def test_ease_refuses_too_many_items():
    split = make_split([(0, 0), (1, 5)], 2, 30_001)
    with pytest.raises(TrainInputError, match="itemknn") as err:
        EASE().fit(split)
    assert "GiB" in str(err.value)


def test_content_scores_cold_items_and_ranks_items_without_vectors_last(small):
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(small.n_items, 8)).astype(np.float32)
    mask = np.ones(small.n_items, dtype=bool)
    mask[[2, 5]] = False
    vectors[7] = 0.0  # a zero vector counts as none
    model = Content(vectors, mask)
    model.fit(small)
    usable = mask.copy()
    usable[7] = False
    with np.errstate(invalid="ignore"):  # item 7: 0 / 0, never used
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    x = dense(small)
    out = model.scores(USERS).numpy()
    for u in USERS:
        items = np.flatnonzero(x[u] * usable)
        if not len(items):
            assert (out[u] == 0).all()
            continue
        profile = unit[items].mean(axis=0)
        profile /= np.linalg.norm(profile)
        np.testing.assert_allclose(out[u, usable], unit[usable] @ profile, rtol=1e-5, atol=1e-6)
        assert (out[u, ~usable] == -2.0).all() and out[u, usable].min() > -2.0
    cold = np.flatnonzero(small.cold_items)
    assert len(cold) and np.abs(out[:, cold]).sum() > 0  # cold items score like any other


def test_content_user_without_history_and_bad_shapes():
    split = make_split([(0, 0), (1, 1)], 3, 3)
    model = Content(np.eye(3, dtype=np.float32), np.array([True, False, True]))
    model.fit(split)
    out = model.scores(np.array([0, 1, 2])).numpy()
    np.testing.assert_allclose(out[0], [1.0, -2.0, 0.0])
    assert (out[1] == 0).all() and (out[2] == 0).all()  # user 1 only has an item without a vector
    with pytest.raises(TrainInputError):
        Content(np.ones((4, 2), np.float32), np.ones(3, bool))
    with pytest.raises(TrainInputError, match="align"):
        Content(np.ones((4, 2), np.float32), np.ones(4, bool)).fit(split)


def test_itemknn_and_ease_beat_pop_on_clustered_data():
    rng = np.random.default_rng(0)
    n_users, n_items, half = 200, 100, 50
    train, test = [], []
    for u in range(n_users):
        own = np.arange(half) + (half if u >= n_users // 2 else 0)
        # a popularity skew inside each half, so Pop is not hopeless on its own
        picked = rng.choice(own, size=12, replace=False, p=np.linspace(2, 1, half) / np.linspace(2, 1, half).sum())
        train += [(u, i) for i in picked[:10]]
        test += [(u, i) for i in picked[10:]]
    split = make_split(train, n_users, n_items, test)
    recall = {}
    for model in (Pop(), ItemKNN(), EASE()):
        model.fit(split)
        recall[model.name] = metric(evaluate(model.scores, split, ks=(10,)), "recall@10")
    assert recall["itemknn"] > recall["pop"] + 0.1
    assert recall["ease"] > recall["pop"] + 0.1
