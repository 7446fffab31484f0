"""Coverage gates: the check trainers run before they start, and ``featctl coverage --min`` runs."""

from __future__ import annotations

from typing import Any

from featctl.errors import CoverageInputError, CoverageTooLowError
from featctl.pipeline.coverage.report import CoverageConfig, CoverageReport, coverage


def check_coverage(report: CoverageReport, min_ratio: float | None = None, min_weighted: float | None = None) -> None:
    """Raise :class:`CoverageTooLowError` naming the first set and figure below a threshold.

    ``min_ratio`` applies to catalogue and distinct-interaction coverage, ``min_weighted`` to the
    share of interactions whose id has a vector.
    """
    for value, option in ((min_ratio, "--min"), (min_weighted, "--min-weighted")):
        if value is not None and not 0.0 <= value <= 1.0:
            raise CoverageInputError(f"{option} must be a ratio between 0 and 1, not {value}")
    if min_ratio is None and min_weighted is None:
        return
    below: list[tuple[str, str, int, int, str, float]] = []
    for entry in report.sets:
        wanted: list[tuple[str, dict[str, Any] | None, str, str, str, float]] = []
        if min_ratio is not None:
            wanted += [("catalogue", entry["catalog"], "covered", "ids", "--min", min_ratio),
                       ("ids seen in the interactions", entry["interactions"], "covered", "ids", "--min", min_ratio)]
        if min_weighted is not None:
            wanted.append(("interactions", entry["interactions"], "covered_rows", "rows", "--min-weighted",
                           min_weighted))
        measured = [(what, part[covered], part[total], option, threshold)
                    for what, part, covered, total, option, threshold in wanted if part and part[total]]
        if not measured:
            given = [what for what, part, *_ in wanted if part is not None]
            reason = (f"the {' and the '.join(dict.fromkeys(given))} hold no ids for it" if given
                      else "nothing to measure it against; pass " + (
                          "--interactions" if min_ratio is None else "--catalog or --interactions"))
            raise CoverageInputError(f"cannot check set '{entry['name']}' against a threshold: {reason}")
        below += [(entry["name"], *m) for m in measured if m[1] < m[4] * m[2]]
    if below:
        raise CoverageTooLowError(*below[0], others=len(below) - 1)


def require_coverage(config: CoverageConfig, min_ratio: float | None = None,
                     min_weighted: float | None = None) -> CoverageReport:
    """Measure and gate in one call: what a trainer runs before it loads features."""
    report = coverage(config)
    check_coverage(report, min_ratio, min_weighted)
    return report
