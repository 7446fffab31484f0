"""Coverage figures computed in DuckDB: one status row per known id, then every count is one query.

Known ids are those of the catalogue and of the interactions. Each gets a state: ``ok``, ``stale``
(its vector was made from content the catalogue no longer has), ``failed`` (with the recorded
reason) or ``never encoded``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from featctl.pipeline.coverage.inputs import quote

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

# Head holds the most popular ids making up the first half of the interactions, torso the next
# 30%, tail the last 20%: the long tail is where missing features usually hide.
HEAD, TORSO = 0.5, 0.8
BUCKETS = ("head", "torso", "tail", "no interactions")

MACROS = r"""
CREATE MACRO id_form(x) AS CASE
    WHEN x IS NULL OR x = '' THEN 'empty'
    WHEN regexp_full_match(x, '0|-?[1-9][0-9]*') THEN 'integer'
    WHEN regexp_full_match(x, '-?0[0-9]+') THEN 'zero-padded integer'
    WHEN regexp_full_match(x, '-?[0-9]+\.[0-9]*') THEN 'decimal'
    WHEN trim(x) <> x THEN 'padded with spaces'
    ELSE 'text' END;
CREATE MACRO id_key(x) AS CASE
    WHEN regexp_full_match(trim(x), '[+-]?[0-9]+(\.0*)?') THEN
        (CASE WHEN starts_with(trim(x), '-') THEN '-' ELSE '' END)
        || coalesce(nullif(ltrim(regexp_replace(ltrim(trim(x), '+-'), '\.0*$', ''), '0'), ''), '0')
    ELSE trim(x) END;
"""

FIXES = {
    "decimal": "the file writes integer ids as decimals (12.0); write them as integers, e.g. CAST to BIGINT",
    "zero-padded integer": "the file pads ids with zeros (012) while the set stores 12, or the reverse; "
                           "use one spelling on both sides",
    "padded with spaces": "ids carry spaces; strip them",
    "integer": "the set stores these ids in another spelling (zero-padded or decimal); re-embed with ids "
               "spelled as the interactions spell them",
}


def setup(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(MACROS)
    con.execute("SET preserve_insertion_order = false")


def popularity(con: duckdb.DuckDBPyConnection, table: str, column: str | None, text: str,
               name: str) -> dict[str, int]:
    """``name`` (id, n, bucket) from an interactions column; also the rows and rows without an id.

    Groups on the column's own type first, so only distinct ids are written as text (``text``).
    """
    if column is None:
        con.execute(f"CREATE TABLE {name} (id VARCHAR, n BIGINT, bucket VARCHAR)")
        return {"rows": 0, "empty_ids": 0}
    grouped = f"SELECT {text} AS id, count(*) AS n FROM {table} GROUP BY {quote(column)}"
    con.execute(f"CREATE TEMP TABLE {name}_all AS {grouped}")
    con.execute(f"""
        CREATE TABLE {name} AS
        WITH c AS (SELECT id, n FROM {name}_all WHERE id IS NOT NULL AND id <> ''),
             r AS (SELECT id, n, coalesce(sum(n) OVER (ORDER BY n DESC, id
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before FROM c)
        SELECT id, n, CASE WHEN before < {HEAD} * t.total THEN 'head'
                           WHEN before < {TORSO} * t.total THEN 'torso' ELSE 'tail' END AS bucket
        FROM r, (SELECT sum(n) AS total FROM c) t
    """)
    rows, empty = con.execute(
        f"SELECT coalesce(sum(n), 0), coalesce(sum(n) FILTER (id IS NULL OR id = ''), 0) FROM {name}_all"
    ).fetchall()[0]
    return {"rows": int(rows), "empty_ids": int(empty)}


def catalog_summary(con: duckdb.DuckDBPyConnection, table: str, text: str, distinct: str,
                    examples: int) -> dict[str, Any]:
    """Distinct ids into ``distinct``; rows, empty ids and duplicated ids of the catalogue."""
    con.execute(f"CREATE TEMP TABLE {distinct}_all AS SELECT {text} AS id, count(*) AS c FROM {table} GROUP BY ALL")
    con.execute(f"CREATE TABLE {distinct} AS SELECT id FROM {distinct}_all WHERE id IS NOT NULL AND id <> ''")
    rows, empty = con.execute(f"SELECT sum(c), coalesce(sum(c) FILTER (id IS NULL OR id = ''), 0) "
                              f"FROM {distinct}_all").fetchall()[0]
    dups = con.execute(f"""
        SELECT id FROM {distinct}_all WHERE id IS NOT NULL AND id <> '' AND c > 1 ORDER BY c DESC, id""").fetchall()
    return {"rows": int(rows or 0), "empty_ids": int(empty), "duplicate_ids": len(dups),
            "duplicate_examples": [d[0] for d in dups[:examples]]}


def build_status(con: duckdb.DuckDBPyConnection, name: str, stored: str, pop: str, catd: str | None,
                 fresh: str | None) -> None:
    """``name``: every known id with its popularity, bucket, catalogue membership and state."""
    universe = f"SELECT id FROM {pop}" + (f" UNION SELECT id FROM {catd}" if catd else "")
    catalog_join = f"LEFT JOIN {catd} c ON c.id = u.id" if catd else "LEFT JOIN (SELECT NULL::VARCHAR AS id) c ON false"
    fresh_join = (f"LEFT JOIN (SELECT DISTINCT id FROM {fresh}) f ON f.id = u.id "
                  f"LEFT JOIN {fresh} fp ON fp.id = u.id AND fp.hash = s.hash") if fresh else ""
    stale = "f.id IS NOT NULL AND fp.id IS NULL" if fresh else "false"
    con.execute(f"""
        CREATE TABLE {name} AS
        SELECT u.id, coalesce(p.n, 0) AS n, p.bucket, c.id IS NOT NULL AS in_catalog,
               CASE WHEN s.id IS NULL THEN 'never encoded' WHEN s.error IS NOT NULL THEN 'failed'
                    WHEN {stale} THEN 'stale' ELSE 'ok' END AS state,
               s.error AS reason
        FROM ({universe}) u
        LEFT JOIN {pop} p ON p.id = u.id
        {catalog_join}
        LEFT JOIN {stored} s ON s.id = u.id
        {fresh_join}
    """)


def set_figures(con: duckdb.DuckDBPyConnection, status: str, stored: str, examples: int,
                int_ids: bool) -> dict[str, Any]:
    """Every count of one set's report, from its status table."""
    order = "TRY_CAST(id AS BIGINT) NULLS LAST, id" if int_ids else "id"
    has = "state IN ('ok', 'stale')"
    totals = con.execute(f"""
        SELECT count(*) FILTER (in_catalog), count(*) FILTER (in_catalog AND {has}),
               count(*) FILTER (in_catalog AND state = 'ok'),
               count(*) FILTER (n > 0), count(*) FILTER (n > 0 AND {has}),
               coalesce(sum(n), 0), coalesce(sum(n) FILTER ({has}), 0),
               count(*) FILTER (NOT in_catalog AND n > 0), coalesce(sum(n) FILTER (NOT in_catalog), 0)
        FROM {status}""").fetchall()[0]
    buckets = {row[0]: row[1:] for row in con.execute(f"""
        SELECT coalesce(bucket, 'no interactions'), count(*), count(*) FILTER ({has}),
               sum(n), sum(n) FILTER ({has})
        FROM {status} GROUP BY ALL""").fetchall()}
    missing = con.execute(f"""
        SELECT state, reason, in_catalog, n > 0, count(*) FROM {status} WHERE state <> 'ok' GROUP BY ALL
        ORDER BY count(*) DESC""").fetchall()
    missing_examples = con.execute(f"""
        SELECT state, reason, list(id ORDER BY r) FROM (
            SELECT state, reason, id, row_number() OVER (PARTITION BY state, reason ORDER BY n DESC, {order}) AS r
            FROM {status} WHERE state <> 'ok')
        WHERE r <= {examples} GROUP BY ALL""").fetchall()
    not_in_catalog = con.execute(f"""
        SELECT id FROM {status} WHERE NOT in_catalog AND n > 0 ORDER BY n DESC, {order}
        LIMIT {examples}""").fetchall()
    stored_forms = dict(con.execute(
        f"SELECT id_form(id), count(*) FROM {stored} GROUP BY ALL ORDER BY 2 DESC").fetchall())
    # When every stored id is a plain integer, a plain-integer id that is missing cannot be a
    # re-spelling of one: only the others need the (costly) normalised join.
    odd_only = "AND id_form(id) <> 'integer'" if set(stored_forms) <= {"integer"} else ""
    mismatches = con.execute(f"""
        WITH m AS (
            SELECT CASE WHEN u.n > 0 THEN 'interactions' ELSE 'catalog' END AS source, id_form(u.id) AS kind,
                   u.id AS written, s.id AS stored, u.n
            FROM (SELECT id, n FROM {status} WHERE state = 'never encoded' {odd_only}) u
            JOIN (SELECT id, id_key(id) AS k FROM {stored}) s ON id_key(u.id) = s.k)
        SELECT source, kind, count(DISTINCT written), sum(n),
               list([written, stored] ORDER BY n DESC, written)[1:{examples}]
        FROM m GROUP BY ALL ORDER BY count(DISTINCT written) DESC""").fetchall()
    return {
        "totals": totals, "buckets": buckets, "missing": missing, "missing_examples": missing_examples,
        "not_in_catalog": [r[0] for r in not_in_catalog], "mismatches": mismatches, "stored_forms": stored_forms,
    }


def forms(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, int]:
    """How the distinct ids of a table are written: integer, decimal, zero-padded, text..."""
    return {k: int(v) for k, v in con.execute(
        f"SELECT id_form(id), count(*) FROM {table} GROUP BY ALL ORDER BY 2 DESC").fetchall()}


def id_range(con: duckdb.DuckDBPyConnection, status: str, stored: str) -> tuple[int | None, int]:
    """The largest integer id and the number of distinct integer ids known to the set or its inputs
    (re-spellings such as ``012`` count once, text ids not at all)."""
    max_id, count = con.execute(f"""
        SELECT max(i), count(DISTINCT i) FROM (
            SELECT TRY_CAST(id AS BIGINT) AS i FROM (SELECT id FROM {status} UNION SELECT id FROM {stored}))
    """).fetchall()[0]
    return (None if max_id is None else int(max_id)), int(count)
