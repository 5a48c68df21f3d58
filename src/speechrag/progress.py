"""The one progress bar look of the CLI and the training app (rich, on stderr).

On a terminal it is rich's live bar. Where stderr is a file or a pipe (``nohup``, CI
logs, ``2> train.log``) rich draws nothing until the work ends, so an hour of training
would leave an empty log: there the bar prints one plain line instead, at most every
``interval`` seconds (and once when a task finishes).
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from speechrag.timestamps import mmss

LOG_INTERVAL_S = 30.0


class PlainLogProgress(Progress):
    """rich's Progress, plus a plain line per ``interval`` when the console is no terminal."""

    def __init__(self, *columns: ProgressColumn, console: Console, disable: bool = False,
                 interval: float = LOG_INTERVAL_S) -> None:
        super().__init__(*columns, console=console, transient=False, disable=disable)
        self._plain = not disable and not console.is_terminal
        self._interval = interval
        self._last: dict[TaskID, float] = {}  # when each task last printed a line
        self._finished: set[TaskID] = set()  # tasks whose last line is printed

    def update(self, task_id: TaskID, **kwargs) -> None:  # type: ignore[override]
        super().update(task_id, **kwargs)
        self._log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def _log(self, task_id: TaskID) -> None:
        if not self._plain or task_id in self._finished:
            return
        task = next((t for t in self.tasks if t.id == task_id), None)
        if task is None or task.total is None:
            return
        now = time.monotonic()
        if task.finished:
            self._finished.add(task_id)
        elif now - self._last.get(task_id, -float("inf")) < self._interval:
            return
        self._last[task_id] = now
        pct = 100 * task.completed / task.total if task.total else 100.0
        info = str(task.fields.get("info", "") or "")
        self.console.print(
            f"{task.description} {task.completed:g}/{task.total:g} ({pct:.0f}%) "
            f"elapsed {mmss(task.elapsed)} left {mmss(task.time_remaining)}"
            + (f"  {info}" if info else ""), markup=False, highlight=False, soft_wrap=True)


def progress_bar(console: Console, *extra: ProgressColumn, disable: bool = False,
                 interval: float = LOG_INTERVAL_S) -> Progress:
    """description, bar, done/total, ``extra`` columns, elapsed, time left."""
    return PlainLogProgress(TextColumn("[bold]{task.description}"), BarColumn(),
                            MofNCompleteColumn(), *extra, TimeElapsedColumn(),
                            TimeRemainingColumn(), console=console, disable=disable,
                            interval=interval)


def training_bar(quiet: bool) -> Progress:
    """The training apps' bar, with a loss column, on stderr (off with ``--quiet``)."""
    from rich.console import Console
    from rich.progress import TextColumn

    return progress_bar(Console(stderr=True), TextColumn("{task.fields[info]}"),
                        disable=quiet)
