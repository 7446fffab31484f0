"""The interaction log a trainer learns from: read with DuckDB, filtered, k-cored and indexed.

Users and items get dense indices; their ids are kept as featctl writes ids (integers as digits,
strings as written) so that features are aligned through ids, never through row order.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from featctl.errors import SourceFormatError, SourceNotFoundError, TrainInputError, first_line
from featctl.pipeline.coverage.inputs import load_columns, quote
from featctl.pipeline.sources import SourceSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InteractionsConfig:
    """Where the interactions are and which rows count as positives."""

    source: SourceSpec
    user_col: str = "user_id"
    item_col: str = "item_id"
    rating_col: str | None = None
    min_rating: float | None = None
    time_col: str | None = None
    k_core: int = 0

    def __post_init__(self) -> None:
        if self.min_rating is not None and self.rating_col is None:
            raise TrainInputError("--min-rating needs the column it applies to; pass --rating-col")
        if self.k_core < 0:
            raise TrainInputError(f"--k-core must be 0 or more, not {self.k_core}")
        if self.source.path is not None and not os.path.isfile(self.source.path):
            raise SourceNotFoundError(self.source.path, "--interactions")


@dataclass(frozen=True)
class Interactions:
    """Positive (user, item) pairs as indices into ``users`` and ``items`` (ids as text, sorted)."""

    users: pa.Array
    items: pa.Array
    user: np.ndarray
    item: np.ndarray
    time: np.ndarray | None
    int_ids: dict[str, bool] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def __len__(self) -> int:
        return len(self.user)

    def typed_ids(self, side: str) -> pa.Array:
        """The ids of ``side`` ("user" or "item") as the source typed them: int64 or string."""
        ids = self.users if side == "user" else self.items
        return ids.cast(pa.int64()) if self.int_ids.get(side) else ids


def load_interactions(config: InteractionsConfig) -> Interactions:
    """Read the log, keep ratings ≥ ``min_rating``, merge repeated pairs, apply the k-core, index."""
    import duckdb

    options: dict[str, tuple[str, str]] = {"u": (config.user_col, "--user-col"), "i": (config.item_col, "--item-col")}
    if config.rating_col:
        options["r"] = (config.rating_col, "--rating-col")
    if config.time_col:
        options["t"] = (config.time_col, "--time-col")
    con = duckdb.connect()
    label = config.source.label
    try:
        rows, as_text = load_columns(con, config.source, options, "raw")
        kinds = {a: str(con.execute(f"SELECT {quote(a)} FROM raw LIMIT 0").description[0][1]).upper() for a in options}
        rating = _number(con, kinds, "r", config, label) if config.rating_col else None
        time = _number(con, kinds, "t", config, label) if config.time_col else "NULL"
        positive = f"{rating} >= {float(config.min_rating)}" if rating and config.min_rating is not None else ""
        keep = f" AND {positive}" if positive else ""
        con.execute(f"""CREATE TABLE pos AS SELECT {as_text['u']} AS u, {as_text['i']} AS i, max({time}) AS t
                        FROM raw WHERE u IS NOT NULL AND i IS NOT NULL{keep} GROUP BY ALL""")
        stats = _counts(con, rows, positive)
        stats["removed_by_k_core"] = _k_core(con, config.k_core)
        data = _indexed(con, config.time_col is not None, stats)
    except duckdb.Error as exc:
        raise SourceFormatError(f"{label}: cannot read the interactions: {first_line(exc)}") from None
    finally:
        con.close()
    if not len(data):
        raise TrainInputError(f"{label}: no interactions left to train on ({_describe(stats)}); "
                              "lower --min-rating or --k-core")
    log.info("interactions: %s", _describe(stats))
    return data


def _number(con: Any, kinds: dict[str, str], alias: str, config: InteractionsConfig, label: str) -> str:
    """SQL reading a rating or time column as a number (timestamps and dates as epoch seconds)."""
    column, option = (config.rating_col, "--rating-col") if alias == "r" else (config.time_col, "--time-col")
    name, kind = quote(alias), kinds[alias]
    if kind.startswith(("TIMESTAMP", "DATE")) and alias == "t":
        return f"epoch({name})"
    if kind != "VARCHAR":
        read = f"TRY_CAST({name} AS DOUBLE)"
    elif alias == "t":
        read = f"coalesce(TRY_CAST({name} AS DOUBLE), epoch(TRY_CAST({name} AS TIMESTAMP)))"
    else:
        read = f"TRY_CAST(trim({name}) AS DOUBLE)"
    bad = con.execute(f"SELECT {name}, row FROM (SELECT *, row_number() OVER () AS row FROM raw) "
                      f"WHERE {name} IS NOT NULL AND {read} IS NULL LIMIT 1").fetchall()
    if bad:
        what = "a number" if alias == "r" else "a number or a timestamp"
        raise TrainInputError(f"{label}: data row {bad[0][1]}, column '{column}' ({option}) holds {bad[0][0]!r}, "
                              f"not {what}; fix the file or choose another column")
    return read


def _counts(con: Any, rows: int, positive: str) -> dict[str, int]:
    null_ids = con.execute("SELECT count(*) FROM raw WHERE u IS NULL OR i IS NULL").fetchall()[0][0]
    below = 0
    if positive:
        below = con.execute(f"SELECT count(*) FROM raw WHERE u IS NOT NULL AND i IS NOT NULL "
                            f"AND NOT coalesce(({positive}), false)").fetchall()[0][0]
    pairs = con.execute("SELECT count(*) FROM pos").fetchall()[0][0]
    return {"rows": rows, "null_ids": int(null_ids), "below_min_rating": int(below),
            "repeated_pairs": int(rows - null_ids - below - pairs)}


def _k_core(con: Any, k: int) -> int:
    """Drop users and items with fewer than ``k`` interactions until none is left (returns pairs removed)."""
    removed = 0
    while k > 1:
        deleted = con.execute(f"""DELETE FROM pos WHERE u IN (SELECT u FROM pos GROUP BY u HAVING count(*) < {k})
                                  OR i IN (SELECT i FROM pos GROUP BY i HAVING count(*) < {k})""").fetchall()[0][0]
        if not deleted:
            break
        removed += int(deleted)
    return removed


def _indexed(con: Any, timed: bool, stats: dict[str, int]) -> Interactions:
    """Dense indices in id order (numeric order for integer ids), so runs are reproducible."""
    ids: dict[str, pa.Array] = {}
    int_ids: dict[str, bool] = {}
    for alias, side in (("u", "user"), ("i", "item")):
        integral = not con.execute(f"SELECT count(*) FROM pos WHERE CAST(TRY_CAST({alias} AS BIGINT) AS VARCHAR) "
                                   f"IS DISTINCT FROM {alias}").fetchall()[0][0]
        order = f"CAST({alias} AS BIGINT)" if integral else alias
        con.execute(f"CREATE TABLE {alias}_ids AS SELECT {alias} AS id, row_number() OVER (ORDER BY {order}) - 1 "
                    f"AS ix FROM (SELECT DISTINCT {alias} FROM pos)")
        ids[side] = con.sql(f"SELECT id FROM {alias}_ids ORDER BY ix").to_arrow_table().column("id").combine_chunks()
        int_ids[side] = integral
    table = con.sql("""SELECT u_ids.ix AS u, i_ids.ix AS i, pos.t FROM pos
                           JOIN u_ids ON pos.u = u_ids.id JOIN i_ids ON pos.i = i_ids.id
                           ORDER BY u_ids.ix, i_ids.ix""").to_arrow_table()
    time = table.column("t").to_numpy() if timed else None
    if time is not None and np.isnan(time.astype(np.float64)).any():
        raise TrainInputError(f"{int(np.isnan(time).sum())} interaction(s) have no time; fill them or drop "
                              "--time-col")
    return Interactions(
        users=ids["user"].cast(pa.string()), items=ids["item"].cast(pa.string()),
        user=table.column("u").to_numpy().astype(np.int64), item=table.column("i").to_numpy().astype(np.int64),
        time=time, int_ids=int_ids, stats=stats,
    )


def _describe(stats: dict[str, int]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in stats.items())

