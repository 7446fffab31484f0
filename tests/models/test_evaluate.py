from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featctl.errors import TrainInputError
from featctl.models import evaluate as ev
from featctl.models.evaluate import evaluate, metric
from featctl.models.splits import Split


def make_split(train, valid, test, n_users, n_items) -> Split:
    def arr(pairs):
        return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)

    train, valid, test = arr(train), arr(valid), arr(test)
    cold = np.ones(n_items, dtype=bool)
    cold[train[:, 1]] = False
    return Split("random", n_users, n_items, train, valid, test, cold, 0)


# u0: train {0}, valid {2}, test {3, 5}; u1: train {1, 3}, test {4}; u2: train {0, 1}, nothing to evaluate.
# warm items {0, 1, 3}, cold {2, 4, 5}
TINY = make_split([(0, 0), (1, 1), (1, 3), (2, 0), (2, 1)], [(0, 2)], [(0, 3), (0, 5), (1, 4)], 3, 6)
SCORES = np.array([
    [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],  # candidates 1, 3, 4, 5 -> truth 3 at rank 1, 5 at rank 3
    [0.5, 0.0, 0.5, 0.0, 0.5, 0.1],  # candidates 0, 2, 4, 5 -> ties 0 = 2 = 4 broken by index: 4 at rank 2
    [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
], dtype=np.float32)


def scorer(users):
    return SCORES[users]


def ndcg(ranks, n_truth, k):
    dcg = sum(1 / math.log2(r + 2) for r in ranks if r < k)
    return dcg / sum(1 / math.log2(i + 2) for i in range(min(n_truth, k)))


def test_hand_computed_all_group():
    res = evaluate(scorer, TINY, ks=(1, 2, 3, 4), tie_seed=None)
    a = res["all"]
    assert a["users"] == 2
    assert a["recall@1"] == 0 and a["hit@1"] == 0 and a["ndcg@1"] == 0
    assert a["recall@2"] == pytest.approx((0.5 + 0) / 2)
    assert a["hit@2"] == pytest.approx(0.5)
    assert a["precision@2"] == pytest.approx((1 / 2) / 2)
    assert a["ndcg@2"] == pytest.approx(ndcg([1, 3], 2, 2) / 2)
    assert a["recall@3"] == pytest.approx((0.5 + 1) / 2)
    assert a["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert a["ndcg@3"] == pytest.approx((ndcg([1, 3], 2, 3) + 0.5) / 2)
    assert a["hit@3"] == pytest.approx(1.0)
    assert a["recall@4"] == pytest.approx(1.0)
    assert a["ndcg@4"] == pytest.approx((ndcg([1, 3], 2, 4) + 0.5) / 2)
    # u0: truth {3: .6, 5: .4} vs {1: .8, 4: .5} -> 1 of 4 pairs; u1: 4 ties 0 and 2, beats 5 -> 2/3
    assert a["auc"] == pytest.approx((0.25 + 2 / 3) / 2)
    assert set(a) == {f"{m}@{k}" for m in ("recall", "ndcg", "hit", "precision") for k in (1, 2, 3, 4)} | {
        "auc", "users"}


def test_hand_computed_warm_and_cold_groups():
    res = evaluate(scorer, TINY, ks=(1, 2), tie_seed=None)
    warm, cold = res["warm"], res["cold"]
    # warm: only u0 (truth 3); candidates 1 (.8), 3 (.6)
    assert warm["users"] == 1
    assert warm["recall@1"] == 0 and warm["recall@2"] == 1
    assert warm["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert warm["auc"] == 0
    # cold: u0 truth 5 among 4 (.5), 5 (.4); u1 truth 4 among 2 (.5), 4 (.5), 5 (.1)
    assert cold["users"] == 2
    assert cold["recall@1"] == 0 and cold["recall@2"] == 1
    assert cold["precision@2"] == pytest.approx(0.5)
    assert cold["auc"] == pytest.approx((0 + 0.75) / 2)


def test_valid_part_excludes_only_train_and_empty_group_is_none():
    res = evaluate(scorer, TINY, part="valid", ks=(1, 3), tie_seed=None)
    # u0: truth 2 (cold); candidates 1 .. 5: 1 (.8), 2 (.7) -> rank 1
    assert res["all"]["users"] == 1
    assert res["all"]["recall@1"] == 0 and res["all"]["recall@3"] == 1
    assert res["warm"] is None
    assert res["cold"]["users"] == 1
    assert metric(res, "recall@3", "warm") == 0.0
    assert metric(res, "recall@3") == 1.0
    with pytest.raises(TrainInputError):
        metric(res, "recall@7")


def test_excluded_items_never_rank_and_all_ties_go_by_index():
    split = make_split([(0, 0)], [(0, 1)], [(0, 2), (0, 4)], 1, 5)
    res = evaluate(lambda u: np.ones((len(u), 5)), split, ks=(1, 2), tie_seed=None)
    # candidates 2, 3, 4 all tied: order 2, 3, 4
    assert res["all"]["recall@1"] == 0.5
    assert res["all"]["ndcg@2"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert res["all"]["auc"] == 0.5
    # repeated interaction: a test item also in train is not truth
    split = make_split([(0, 0)], [], [(0, 0), (0, 3)], 1, 5)
    res = evaluate(lambda u: torch.tensor([[5.0, 0, 0, 4, 0]]).repeat(len(u), 1), split, ks=(1,), tie_seed=None)
    assert res["all"]["recall@1"] == 1.0


def test_group_none_when_no_user_has_truth():
    split = make_split([(0, 0), (0, 1)], [], [(0, 1)], 1, 3)  # test item also in train
    res = evaluate(lambda u: np.zeros((len(u), 3)), split, tie_seed=None)
    assert res == {"all": None, "warm": None, "cold": None}
    assert metric(res, "ndcg@20") == 0.0


def reference(scores, split, part, ks):
    """Per-user loops, straight from the definitions."""
    seen = {}
    for u, i in np.concatenate([split.train] + ([split.valid] if part == "test" else [])):
        seen.setdefault(int(u), set()).add(int(i))
    truth_of = {}
    for u, i in (split.test if part == "test" else split.valid):
        if int(i) not in seen.get(int(u), set()):
            truth_of.setdefault(int(u), set()).add(int(i))
    out = {}
    for group in ("all", "warm", "cold"):
        items = [i for i in range(split.n_items)
                 if group == "all" or (group == "cold") == bool(split.cold_items[i])]
        rows, aucs = [], []
        for u in sorted(truth_of):
            cand = [i for i in items if i not in seen.get(u, set())]
            truth = {i for i in truth_of[u] if i in cand}
            if not truth:
                continue
            ranked = sorted(cand, key=lambda i: (-scores[u, i], i))
            row = {}
            for k in ks:
                ranks = [r for r, i in enumerate(ranked[:k]) if i in truth]
                row[f"recall@{k}"] = len(ranks) / len(truth)
                row[f"precision@{k}"] = len(ranks) / k
                row[f"hit@{k}"] = float(bool(ranks))
                row[f"ndcg@{k}"] = ndcg(ranks, len(truth), k)
            rows.append(row)
            neg = [i for i in cand if i not in truth]
            if neg:
                pairs = [(scores[u, t] > scores[u, n]) + 0.5 * (scores[u, t] == scores[u, n])
                         for t in truth for n in neg]
                aucs.append(sum(pairs) / len(pairs))
        if rows:
            out[group] = {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}
            out[group]["auc"] = sum(aucs) / len(aucs)
            out[group]["users"] = len(rows)
        else:
            out[group] = None
    return out


def random_split(seed, n_users=25, n_items=40):
    rng = np.random.default_rng(seed)
    pairs = np.array([(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.2])
    part = rng.choice(3, size=len(pairs), p=[0.6, 0.2, 0.2])
    held = np.isin(pairs[:, 1], rng.choice(n_items, 8, replace=False))  # these items go cold
    part[held] = rng.choice([1, 2], size=int(held.sum()))
    train = pairs[part == 0]
    repeated = train[:: len(train) // 4]  # a few test and valid interactions repeat training ones
    split = make_split(train, np.concatenate([pairs[part == 1], repeated[:2]]),
                       np.concatenate([pairs[part == 2], repeated[2:]]), n_users, n_items)
    assert split.cold_items.any() and not split.cold_items.all()
    scores = np.round(rng.normal(size=(n_users, n_items)), 1)  # many ties, negative scores and -0.0
    return split, scores


@pytest.mark.parametrize("part", ["test", "valid"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_and_batching_changes_nothing(part, seed, monkeypatch):
    split, scores = random_split(seed)
    ks = (1, 5, 10)
    expected = reference(scores, split, part, ks)
    one = evaluate(lambda u: scores[u], split, part=part, ks=ks, batch_users=1, tie_seed=None)
    transposed = lambda u: torch.from_numpy(scores[u].T.copy()).T  # noqa: E731  (not contiguous)
    many = evaluate(transposed, split, part=part, ks=ks, tie_seed=None)
    monkeypatch.setattr(ev, "CHUNK_ELEMENTS", 2 * split.n_items)  # metric chunks of two users
    chunked = evaluate(lambda u: scores[u], split, part=part, ks=ks, batch_users=7, tie_seed=None)
    for group in ("all", "warm", "cold"):
        if expected[group] is None:
            assert one[group] is None and many[group] is None and chunked[group] is None
            continue
        for got in (one, many, chunked):
            assert got[group].keys() == expected[group].keys()
            for key, value in expected[group].items():
                assert got[group][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (group, key)


def test_non_finite_scores_and_bad_arguments():
    split = make_split([(0, 0)], [], [(0, 2)], 1, 4)
    res = evaluate(lambda u: np.array([[0.0, np.nan, np.inf, -np.inf]]), split, ks=(1,), tie_seed=None)
    assert res["all"]["recall@1"] == 1.0 and res["all"]["auc"] == 1.0
    with pytest.raises(TrainInputError):
        evaluate(scorer, TINY, part="train")
    with pytest.raises(TrainInputError):
        evaluate(scorer, TINY, ks=(0,))
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda u: np.zeros((len(u), 5)), TINY)


def test_ties_are_broken_in_a_seeded_random_order_by_default():
    # every item scores the same: by index, the truth item 0 would always be first
    split = make_split([(u, 99) for u in range(200)], [], [(u, 0) for u in range(200)], 200, 100)
    flat = lambda u: np.zeros((len(u), 100), dtype=np.float32)  # noqa: E731
    by_index = evaluate(flat, split, ks=(1,), tie_seed=None)["all"]
    assert by_index["hit@1"] == 1.0
    seeded = [evaluate(flat, split, ks=(1, 50), tie_seed=s)["all"] for s in (0, 0, 1)]
    assert seeded[0] == seeded[1]  # deterministic for a seed
    assert seeded[0]["hit@1"] in (0.0, 1.0) and seeded[0]["auc"] == pytest.approx(0.5)
    # over seeds, a tie lands the truth item in the top half about half the time, not always
    hits = [evaluate(flat, split, ks=(50,), tie_seed=s)["all"]["hit@50"] for s in range(40)]
    assert 0.2 < np.mean(hits) < 0.8


@pytest.mark.parametrize("seed", [0, 1])
def test_validation_ndcg_is_evaluates_ndcg(seed):
    split, scores = random_split(seed)
    scores = scores + np.random.default_rng(seed).random(scores.shape) * 1e-3  # continuous: no ties
    full = evaluate(lambda u: scores[u], split, part="valid", ks=(5, 20))
    for k in (5, 20):
        for group in ("all", "cold"):
            quick = ev.validation_ndcg(lambda u: scores[u], split, k=k, batch_users=3, group=group)
            assert quick == pytest.approx(full[group][f"ndcg@{k}"])
