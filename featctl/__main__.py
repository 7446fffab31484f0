"""``python -m featctl``: the same command line as the ``featctl`` script."""

from __future__ import annotations

from featctl.cli import main

main()
