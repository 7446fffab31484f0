"""The terminal rendering of a coverage report: a summary table, then each set's details."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from featctl.cli.common import console
from featctl.pipeline.coverage import CoverageReport


def render(report: CoverageReport, examples: bool, html: str | None) -> None:
    data = report.to_dict()
    inter = data["interactions"]
    console.print(f"[bold]coverage[/] of {len(data['sets'])} set(s) in {escape(data['store'])}"
                  + (f" · interactions {escape(inter['path'])} ({inter['rows']:,} rows)" if inter else ""))
    summary = Table("set", "entity", "vectors", "catalogue", "interactions", "weighted", "missing", "stale",
                    "health")
    for s in data["sets"]:
        cat, its, vec = s["catalog"], s["interactions"], s["vectors"]
        summary.add_row(
            escape(s["name"]), s["entity"], f"{s['stored']['vectors']:,}",
            _ratio(cat, "ratio", "covered", "ids"), _ratio(its, "ratio", "covered", "ids"),
            _ratio(its, "weighted_ratio", "covered_rows", "rows"), f"{s['missing']['total']:,}",
            "—" if s["missing"]["stale"] is None else f"{s['missing']['stale']:,}",
            "ok" if not (vec["nan_or_inf"] or vec["zero_norm"]) else "[red]bad[/]",
        )
    console.print(summary)
    for s in data["sets"]:
        _details(s, examples)
    if report.saved or html:
        paths = [*report.saved, *([html] if html else [])]
        console.print("saved: " + ", ".join(escape(p) for p in paths))


def _details(s: dict[str, Any], examples: bool) -> None:
    console.print(f"\n[bold]{escape(s['name'])}[/]  {s['entity']} {s['modality']} · {escape(s['encoder'])} · "
                  f"{s['dim']}-d {s['dtype']} · {s['id_type']} ids")
    if s["catalog"]:
        c = s["catalog"]
        console.print(f"catalogue {escape(c['path'])} ({c['origin']}, id column {escape(c['id_column'])}): "
                      f"{c['covered']:,} of {c['ids']:,} ids have a vector"
                      + (f", {c['fresh']:,} up to date" if c["fresh"] is not None else ""))
    if s["buckets"]:
        table = Table("bucket", "ids", "covered", "ratio", "interactions", "weighted")
        for b in s["buckets"]:
            table.add_row(b["name"], f"{b['ids']:,}", f"{b['covered']:,}", _pct(b["ratio"]),
                          f"{b['interactions']:,}", _pct(b["weighted_ratio"]))
        console.print(table)
    m = s["missing"]
    parts = [f"never encoded {m['never_encoded']:,}", *(f"failed ({escape(r)}) {n:,}" for r, n in m["failed"].items()),
             f"stale {m['stale']:,}" if m["stale"] is not None else f"stale {escape(m['stale_note'] or '')}"]
    console.print("missing: " + " · ".join(parts))
    if examples:
        shown = {"never encoded": m["examples"]["never_encoded"], "stale": m["examples"]["stale"],
                 **{f"failed ({r})": ids for r, ids in m["examples"]["failed"].items()}}
        for reason, ids in shown.items():
            if ids:
                console.print(f"  {escape(reason)}: {escape(', '.join(str(i) for i in ids))}", soft_wrap=True)
    v = s["vectors"]
    norm = v["norm"]
    console.print(f"vectors: {v['rows']:,} · NaN/inf {v['nan_or_inf']:,} · zero norm {v['zero_norm']:,}"
                  + (f" · norm min {norm['min']:.3g} median {norm['median']:.3g} max {norm['max']:.3g}" if norm else "")
                  + f" · identical groups {v['identical']['groups']:,}"
                  + (f" ({v['identical']['same_content_groups']:,} with identical content)"
                     if v["identical"]["groups"] else ""))
    space = s["id_space"]
    if space["max_id"] is not None:
        console.print(f"ids: largest {space['max_id']:,} · {space['ids']:,} distinct · gap {space['gap']:,}")
    for warning in s["warnings"]:
        console.print(f"[yellow]! {escape(warning)}[/]", soft_wrap=True)


def _ratio(part: dict[str, Any] | None, key: str, covered: str, total: str) -> str:
    if not part or part[key] is None:
        return "—"
    return f"{_pct(part[key])} ({part[covered]:,}/{part[total]:,})"


def _pct(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.1%}"
