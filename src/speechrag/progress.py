"""The one progress bar look of the CLI and the training app (rich, on stderr)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(console: Console, *extra: ProgressColumn, disable: bool = False) -> Progress:
    """description, bar, done/total, ``extra`` columns, elapsed, time left."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    *extra, TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                    transient=False, disable=disable)
