"""Coverage report as one self-contained HTML page: inline CSS, matplotlib plots as inline SVG, nothing fetched."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import jinja2
import matplotlib
from markupsafe import Markup
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

_COLORS = {"catalogue": "#4c72b0", "interactions": "#55a868", "weighted": "#dd8452"}
_BUCKET_COLORS = {"head": "#4c72b0", "torso": "#55a868", "tail": "#dd8452", "no interactions": "#8c8c8c"}
_SVG_RC = {"svg.hashsalt": "featctl", "svg.fonttype": "none", "font.size": 9}
# no Creator/Date/Type metadata: no timestamps and no URLs in the SVG beyond its namespaces
_SVG_METADATA: dict[str, Any] = {"Date": None, "Creator": None, "Type": None, "Format": None}

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>featctl coverage report</title>
<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1180px;
       padding: 0 16px; color: #222; background: #fff; font-size: 14px; line-height: 1.4; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 19px; border-bottom: 2px solid #ddd; padding-bottom: 4px;
     margin-top: 36px; } h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #555; } .meta code, td code { background: #f3f3f3; padding: 1px 4px; border-radius: 3px; }
table { border-collapse: collapse; margin: 6px 0 12px; } th, td { border: 1px solid #d8d8d8; padding: 4px 8px;
        text-align: left; vertical-align: top; } th { background: #f4f6f8; } td.num { text-align: right; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; } .plot { flex: 1 1 480px; min-width: 0; }
.plot svg { max-width: 100%; height: auto; display: block; }
.warnings { background: #fff4e5; border-left: 4px solid #e8890c; padding: 8px 12px 8px 28px; margin: 8px 0; }
.warnings li { margin: 2px 0; } .ok { color: #2e7d32; } .bad { color: #c62828; font-weight: 600; }
.muted { color: #777; } .set { margin-bottom: 28px; }
</style></head><body>
<h1>featctl coverage report</h1>
<div class="meta">Store <code>{{ r.store }}</code> &middot; created {{ r.created_at }}
{% if r.interactions %} &middot; interactions <code>{{ r.interactions.path }}</code>
({{ num(r.interactions.rows) }} rows){% else %} &middot; no interaction log{% endif %}</div>
<h2>Summary</h2>
<table><tr><th>Set</th><th>Entity</th><th>Encoder</th><th>Vectors / ids</th><th>Catalogue</th><th>Interactions</th>
<th>Weighted</th><th>Missing</th></tr>
{% for s in r.sets %}<tr><td><a href="#set-{{ loop.index }}">{{ s.name }}</a></td><td>{{ s.entity }}</td>
<td><code>{{ s.encoder }}</code></td><td class="num">{{ num(s.stored.vectors) }} / {{ num(s.stored.ids) }}</td>
<td class="num">{{ pct((s.catalog or {}).ratio) }}</td><td class="num">{{ pct((s.interactions or {}).ratio) }}</td>
<td class="num">{{ pct((s.interactions or {}).weighted_ratio) }}</td>
<td class="num {{ 'bad' if (s.missing or {}).total else 'ok' }}">{{ num((s.missing or {}).total) }}</td></tr>
{% endfor %}</table>
{% if overview %}<h3>Per-set coverage bars</h3><div class="plot">{{ overview }}</div>{% endif %}
{% for s in r.sets %}{% set m = s.missing or {} %}{% set v = s.vectors or {} %}{% set sp = s.id_space or {} %}
<div class="set" id="set-{{ loop.index }}">
<h2>{{ s.name }} <span class="muted">({{ s.entity }}, {{ s.modality }}, {{ s.encoder }}, {{ s.dim }}-d
{{ s.dtype }}, ids {{ s.id_type }})</span></h2>
{% if s.warnings %}<ul class="warnings">{% for w in s.warnings %}<li>{{ w }}</li>{% endfor %}</ul>
{% else %}<p class="ok">No warnings.</p>{% endif %}
<p>Stored: {{ num(s.stored.ids) }} ids, {{ num(s.stored.vectors) }} vectors, {{ num(s.stored.failed) }} failed.
{% if s.catalog %}Catalogue <code>{{ s.catalog.path }}</code> (column {{ s.catalog.id_column }}, from
{{ s.catalog.origin }}): {{ num(s.catalog.covered) }} of {{ num(s.catalog.ids) }} ids covered
({{ pct(s.catalog.ratio) }}){% if s.catalog.fresh is not none %}, {{ num(s.catalog.fresh) }} fresh
({{ pct(s.catalog.fresh_ratio) }}){% endif %}; {{ num(s.catalog.empty_ids) }} empty ids,
{{ num(s.catalog.duplicate_ids) }} duplicate ids{% if s.catalog.duplicate_examples %}{{ " " }}
(e.g. {{ ex(s.catalog.duplicate_examples) }}){% endif %}.{% else %}No catalogue.{% endif %}
{{ " " }}{% if s.interactions %}Interactions column {{ s.interactions.column }}: {{ num(s.interactions.covered) }} of
{{ num(s.interactions.ids) }} ids ({{ pct(s.interactions.ratio) }}), {{ num(s.interactions.covered_rows) }} of
{{ num(s.interactions.rows) }} rows ({{ pct(s.interactions.weighted_ratio) }}).{% endif %}</p>
<div class="plots">
<div class="plot"><h3>Coverage by popularity bucket</h3>{% if plots[loop.index0].buckets %}
{{ plots[loop.index0].buckets }}{% else %}<p class="muted">No popularity buckets (no interaction log).</p>
{% endif %}</div>
<div class="plot"><h3>Norm histogram</h3>{% if plots[loop.index0].hist %}{{ plots[loop.index0].hist }}
{% else %}<p class="muted">No norm histogram (no vectors).</p>{% endif %}</div>
</div>
<h3>Missing ids by reason</h3>
{% if m.total %}<table><tr><th>Reason</th><th>Ids</th><th>Examples</th></tr>
{% if m.never_encoded %}<tr><td>never encoded</td><td class="num">{{ num(m.never_encoded) }}</td>
<td>{{ ex((m.examples or {}).never_encoded) }}</td></tr>{% endif %}
{% for reason, n in (m.failed or {}).items() %}<tr><td>failed: {{ reason }}</td><td class="num">{{ num(n) }}</td>
<td>{{ ex(((m.examples or {}).failed or {}).get(reason)) }}</td></tr>{% endfor %}
{% if m.stale %}<tr><td>stale (content changed since encoding)</td><td class="num">{{ num(m.stale) }}</td>
<td>{{ ex((m.examples or {}).stale) }}</td></tr>{% endif %}
<tr><th>Total</th><th class="num">{{ num(m.total) }}</th><th></th></tr></table>
{% else %}<p class="ok">Nothing missing.</p>{% endif %}
{% if m.stale_note %}<p class="muted">Stale ids: {{ m.stale_note }}</p>{% endif %}
<h3>Vector health</h3>
<table><tr><th>Rows</th><th>NaN / inf</th><th>Zero norm</th><th>Norm min</th><th>Norm median</th><th>Norm max</th>
<th>Identical groups</th></tr><tr><td class="num">{{ num(v.rows) }}</td>
<td class="num {{ 'bad' if v.nan_or_inf else '' }}">{{ num(v.nan_or_inf) }}</td>
<td class="num {{ 'bad' if v.zero_norm else '' }}">{{ num(v.zero_norm) }}</td>
<td class="num">{{ fnum((v.norm or {}).min) }}</td><td class="num">{{ fnum((v.norm or {}).median) }}</td>
<td class="num">{{ fnum((v.norm or {}).max) }}</td>
<td class="num">{{ num((v.identical or {}).groups) }}</td></tr></table>
{% if v.identical and v.identical.groups %}<p class="bad">Identical vectors: {{ num(v.identical.groups) }}
group(s) covering {{ num(v.identical.ids) }} ids ({{ num(v.identical.same_content_groups) }} with identical
content), e.g.
{% for g in v.identical.examples %}[{{ g | join(", ") }}]{{ "; " if not loop.last }}{% endfor %}</p>{% endif %}
<h3>Id space</h3>
<table><tr><th>Id type</th><th>Ids</th><th>Max id</th><th>Gap (max id + 1 &minus; ids)</th><th>Not in catalogue</th>
</tr><tr><td>{{ sp.id_type }}</td><td class="num">{{ num(sp.ids) }}</td><td class="num">{{ num(sp.max_id) }}</td>
<td class="num">{{ num(sp.gap) }}</td><td>{% if sp.not_in_catalog %}{{ num(sp.not_in_catalog.ids) }} ids,
{{ num(sp.not_in_catalog.rows) }} rows; e.g. {{ ex(sp.not_in_catalog.examples) }}{% else %}&mdash;{% endif %}</td>
</tr></table>
{% if sp.forms %}<p class="muted">Id forms: {% for src, forms in sp.forms.items() %}{{ src }}
{% for k, n in forms.items() %}{{ k }} {{ num(n) }}{{ ", " if not loop.last }}{% endfor %}
{{ "; " if not loop.last }}{% endfor %}</p>{% endif %}
{% if sp.mismatches %}<table><tr><th>Source</th><th>Kind</th><th>Ids</th><th>Rows</th><th>Examples (seen &rarr; stored)
</th><th>Fix</th></tr>{% for mm in sp.mismatches %}<tr><td>{{ mm.source }}</td><td>{{ mm.kind }}</td>
<td class="num">{{ num(mm.ids) }}</td><td class="num">{{ num(mm.rows) }}</td>
<td>{% for pair in mm.examples %}<code>{{ q(pair[0]) }}</code> &rarr; <code>{{ q(pair[1]) }}</code>
{{ "; " if not loop.last }}{% endfor %}</td><td>{{ mm.fix }}</td></tr>{% endfor %}</table>{% endif %}
</div>
{% endfor %}
</body></html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)


def _absent(value: Any) -> bool:
    return value is None or isinstance(value, jinja2.Undefined)


def _pct(ratio: float | None) -> str:
    return "—" if _absent(ratio) else f"{100 * ratio:.1f}%"


def _num(value: Any) -> str:
    if _absent(value):
        return "—"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _fnum(value: float | None) -> str:
    return "—" if _absent(value) else f"{value:.4f}"


def _examples(ids: list[Any] | None) -> str:
    return ", ".join(str(i) for i in ids) if ids else "—"


def _quoted(value: Any) -> str:
    """Quote string ids so that stray spaces and "12.0"-style forms are visible next to their stored form."""
    return f'"{value}"' if isinstance(value, str) else str(value)


def _svg(draw: Callable[[Figure], None], size: tuple[float, float]) -> Markup:
    """Draw on a fresh Figure (no pyplot, global backend untouched) and return its SVG markup."""
    with matplotlib.rc_context(_SVG_RC):
        fig = Figure(figsize=size, layout="constrained")
        try:
            draw(fig)
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata=_SVG_METADATA)
        finally:
            fig.clear()
    text = buf.getvalue()
    return Markup(text[text.index("<svg"):])  # drop the XML declaration and doctype


def _overview_plot(sets: list[dict[str, Any]]) -> Markup | None:
    if not sets:
        return None
    names = [s.get("name", "?") for s in sets]
    series = {
        "catalogue": [(s.get("catalog") or {}).get("ratio") for s in sets],
        "interactions": [(s.get("interactions") or {}).get("ratio") for s in sets],
        "weighted": [(s.get("interactions") or {}).get("weighted_ratio") for s in sets],
    }

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        height = 0.8 / len(series)
        for k, (label, values) in enumerate(series.items()):
            ys = [i + (k - 1) * height for i in range(len(sets))]
            bars = ax.barh(ys, [100 * (v or 0) for v in values], height=height, label=label, color=_COLORS[label])
            ax.bar_label(bars, labels=[_pct(v) if v is not None else "n/a" for v in values], padding=3, fontsize=8)
        ax.set_yticks(range(len(sets)), names, parse_math=False)
        ax.invert_yaxis()
        ax.set_xlim(0, 112)
        ax.set_xlabel("covered (%)")
        fig.legend(loc="outside upper center", ncols=len(series), fontsize=8, frameon=False)

    return _svg(draw, (9.0, 1.2 + 0.9 * len(sets)))


def _bucket_plot(buckets: list[dict[str, Any]]) -> Markup | None:
    if not buckets:
        return None

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        names = [b.get("name", "?") for b in buckets]
        ratios = [b.get("ratio") for b in buckets]
        bars = ax.bar(names, [100 * (r or 0) for r in ratios], color=[_BUCKET_COLORS.get(n, "#4c72b0") for n in names])
        labels = [f"{b.get('covered', 0):,}/{b.get('ids', 0):,}\n{_pct(r)}" for b, r in zip(buckets, ratios)]
        ax.bar_label(bars, labels=labels, padding=2, fontsize=8)
        ax.set_ylim(0, 125)
        ax.set_ylabel("ids covered (%)")

    return _svg(draw, (5.6, 3.2))


def _hist_plot(hist: dict[str, Any] | None) -> Markup | None:
    edges, counts = (hist or {}).get("edges") or [], (hist or {}).get("counts") or []
    if not counts or len(edges) != len(counts) + 1 or not any(counts):
        return None

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.stairs(counts, edges, fill=True, color="#4c72b0", alpha=0.85)
        ax.set_xlabel("L2 norm")
        ax.set_ylabel("vectors")
        ax.ticklabel_format(axis="x", useOffset=False)

    return _svg(draw, (5.6, 3.2))


def render_html(report: dict[str, Any]) -> str:
    """Render a coverage report dict (schema 1) as one self-contained HTML page."""
    sets = list(report.get("sets") or [])
    plots = [{"buckets": _bucket_plot(s.get("buckets") or []),
              "hist": _hist_plot((s.get("vectors") or {}).get("histogram"))} for s in sets]
    page = _ENV.from_string(TEMPLATE).render(
        r={**report, "sets": sets}, overview=_overview_plot(sets), plots=plots,
        pct=_pct, num=_num, fnum=_fnum, ex=_examples, q=_quoted)
    log.debug("coverage html: %d sets, %d bytes", len(sets), len(page))
    return page
