"""Coverage reports: what each feature set really covers, before a trainer zero-fills the rest."""

from __future__ import annotations

from featctl.pipeline.coverage.gates import check_coverage, require_coverage
from featctl.pipeline.coverage.report import CoverageConfig, CoverageReport, coverage

__all__ = ["CoverageConfig", "CoverageReport", "check_coverage", "coverage", "require_coverage"]
