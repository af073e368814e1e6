"""Where the benchmarks write their Markdown reports."""

from __future__ import annotations

import datetime
from pathlib import Path


def write_report(text: str, name: str, out: str | None = None) -> Path:
    """``text`` to ``out``, or to ``benchmarks/results/<today>-<name>.md``; prints where."""
    path = Path(out or Path(__file__).parent / "results" / f"{datetime.date.today()}-{name}.md")
    path.write_text(text.rstrip("\n") + "\n")
    print(f"\nwritten to {path}")
    return path
