"""Seeded train/validation/test splits of an interaction log: random per user, temporal leave-one-out, cold items.

Every split works on indices (``Interactions.user`` / ``.item``); ids never leave the data module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from featctl.errors import TrainInputError
from featctl.models.data import Interactions

log = logging.getLogger(__name__)

SPLITS = ("random", "temporal", "cold-item")
COLD_SHARE = 0.2


@dataclass(frozen=True)
class Split:
    """Interactions as (user, item) index pairs, int64 arrays of shape (n, 2).

    ``cold_items`` marks items with no training interaction. ``skipped_users`` counts users that
    have no test interaction and so are not evaluated.
    """

    kind: str
    n_users: int
    n_items: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    cold_items: np.ndarray
    skipped_users: int

    def summary(self) -> dict[str, int | str]:
        return {"split": self.kind, "train": len(self.train), "valid": len(self.valid), "test": len(self.test),
                "cold_items": int(self.cold_items.sum()), "users_without_test": self.skipped_users}


def split(data: Interactions, kind: str = "random", seed: int = 0) -> Split:
    """Split ``data`` the way ``kind`` says; the same seed gives the same split."""
    if kind not in SPLITS:
        raise TrainInputError(f"unknown split '{kind}'; choose one of {', '.join(SPLITS)}")
    pairs = np.stack([data.user, data.item], axis=1)
    rng = np.random.default_rng(seed)
    if kind == "random":
        part = _random_parts(data.user, rng)
    elif kind == "temporal":
        if data.time is None:
            raise TrainInputError("the temporal split orders each user's interactions by time; pass --time-col")
        part = _leave_one_out(data.user, data.time)
    else:
        part = _cold_item_parts(data.item, data.n_items, rng)
    train, valid, test = (pairs[part == p] for p in range(3))
    cold = np.ones(data.n_items, dtype=bool)
    cold[train[:, 1]] = False
    skipped = data.n_users - len(np.unique(test[:, 0]))
    if skipped:
        log.info("%d users have no test interaction and are not evaluated", skipped)
    if not len(test):
        raise TrainInputError(f"the {kind} split leaves no test interactions ({len(pairs):,} interactions in all); "
                              "use more data or a lower --k-core")
    return Split(kind, data.n_users, data.n_items, train, valid, test, cold, skipped)


def _group_positions(user: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order rows by (user, key); return the order, each row's position in its user's list and the list size."""
    order = np.lexsort((key, user))
    sorted_users = user[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    size = np.repeat(sizes, sizes)
    position = np.arange(len(order)) - np.repeat(starts, sizes)
    return order, position, size


def _random_parts(user: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """80/10/10 of each user's interactions, counted as RecBole counts them (a user with fewer than
    ten interactions still gives one to validation and one to test while two or more stay in training)."""
    order, position, size = _group_positions(user, rng.random(len(user)))
    n_valid = np.floor(0.1 * size).astype(np.int64)
    n_test = n_valid.copy()
    n_train = size - n_valid - n_test
    for count in (n_test, n_valid):  # test first, as RecBole does
        grow = (count == 0) & (0.1 * size > 0) & (n_train > 1)
        count[grow] += 1
        n_train[grow] -= 1
    part = np.where(position < n_train, 0, np.where(position < n_train + n_valid, 1, 2))
    out = np.empty(len(user), dtype=np.int8)
    out[order] = part
    return out


def _leave_one_out(user: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Each user's last interaction is test, the one before is validation, when there are enough to train on."""
    order, position, size = _group_positions(user, time)
    from_end = size - position
    part = np.where((from_end == 1) & (size >= 2), 2, np.where((from_end == 2) & (size >= 3), 1, 0))
    out = np.empty(len(user), dtype=np.int8)
    out[order] = part
    return out


def _cold_item_parts(item: np.ndarray, n_items: int, rng: np.random.Generator) -> np.ndarray:
    """Hold out 20% of the items entirely: half of them validate, the other half test."""
    held = rng.permutation(n_items)[: max(2, round(COLD_SHARE * n_items))]
    role = np.zeros(n_items, dtype=np.int8)
    role[held[: len(held) // 2]] = 1
    role[held[len(held) // 2:]] = 2
    return role[item]
