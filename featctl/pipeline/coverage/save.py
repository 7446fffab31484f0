"""Saving reports under the store's ``reports/``: JSON for machines, one HTML page for people."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from featctl.stores import fs
from featctl.stores.files import write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from featctl.pipeline.coverage.report import CoverageReport

log = logging.getLogger(__name__)


def save_report(report: CoverageReport, root: str) -> tuple[str, ...]:
    """Write ``reports/coverage-<UTC time>.json`` and ``.html``; returns their paths.

    A store the user may read but not write still gets its report printed: saving is skipped
    with a warning rather than failing the run.
    """
    from featctl.pipeline.coverage.html import render_html

    folder = fs.join(root, "reports")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"coverage-{stamp}"
    number = 1
    try:
        while fs.exists(fs.join(folder, name + ".json")):
            number += 1
            name = f"coverage-{stamp}-{number}"
        fs.makedirs(folder)
        write_json_atomic(fs.join(folder, name + ".json"), report.to_dict())
        write_text_atomic(fs.join(folder, name + ".html"), render_html(report.to_dict()))
    except OSError as exc:
        log.warning("could not save the report under %s: %s", folder, exc)
        return ()
    return fs.join(folder, name + ".json"), fs.join(folder, name + ".html")
