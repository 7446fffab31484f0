"""Coverage gates: the check trainers run before they start, and ``featctl coverage --min`` runs."""

from __future__ import annotations

from featctl.errors import CoverageInputError, CoverageTooLowError
from featctl.pipeline.coverage.report import CoverageConfig, CoverageReport, coverage


def check_coverage(report: CoverageReport, min_ratio: float | None = None, min_weighted: float | None = None) -> None:
    """Raise :class:`CoverageTooLowError` naming the first set and figure below a threshold.

    ``min_ratio`` applies to catalogue and distinct-interaction coverage, ``min_weighted`` to the
    share of interactions whose id has a vector.
    """
    if min_ratio is None and min_weighted is None:
        return
    below: list[tuple[str, str, float, int, int, str, float]] = []
    for entry in report.sets:
        measured = []
        if min_ratio is not None:
            for key, what in (("catalog", "catalogue"), ("interactions", "ids seen in the interactions")):
                part = entry.get(key)
                if part and part["ratio"] is not None:
                    measured.append((what, part["ratio"], part["covered"], part["ids"], "--min", min_ratio))
        if min_weighted is not None:
            part = entry.get("interactions")
            if part and part["weighted_ratio"] is not None:
                measured.append(("interactions", part["weighted_ratio"], part["covered_rows"], part["rows"],
                                 "--min-weighted", min_weighted))
        if not measured:
            need = "--interactions" if min_weighted is not None and min_ratio is None else "--catalog or --interactions"
            raise CoverageInputError(
                f"cannot check set '{entry['name']}' against a threshold: nothing to measure it against; pass {need}"
            )
        below += [(entry["name"], *fig) for fig in measured if fig[1] < fig[5]]
    if below:
        name, what, ratio, covered, total, option, threshold = below[0]
        raise CoverageTooLowError(name, what, ratio, covered, total, option, threshold, len(below) - 1)


def require_coverage(config: CoverageConfig, min_ratio: float | None = None,
                     min_weighted: float | None = None) -> CoverageReport:
    """Measure and gate in one call: what a trainer runs before it loads features."""
    report = coverage(config)
    check_coverage(report, min_ratio, min_weighted)
    return report
