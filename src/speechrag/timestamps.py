"""Times as people read them: mm:ss (h:mm:ss past an hour).

Its own module so that the progress bar, which the training app uses on machines
without the index's dependencies (a lent GPU machine), need not import the report."""

from __future__ import annotations


def mmss(seconds: float | None) -> str:
    """Seconds -> 'mm:ss' ('h:mm:ss' past an hour); '-' when there is no time."""
    if seconds is None:
        return "-"
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
