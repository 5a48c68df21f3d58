from __future__ import annotations

import io
import subprocess
import sys
import textwrap

from rich.console import Console

from speechrag.progress import progress_bar


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=200), out


def test_plain_lines_where_stderr_is_no_terminal() -> None:
    """A log file gets readable lines while the work runs, not only at its end."""
    console, out = _console(terminal=False)
    with progress_bar(console, interval=0) as bar:
        task = bar.add_task("training", total=4)
        bar.advance(task)
        assert "training 1/4 (25%) elapsed 00:00" in out.getvalue()
        bar.update(task, completed=4)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("training 4/4")]
    assert lines == ["training 4/4 (100%) elapsed 00:00 left 00:00"]  # once, not twice


def test_lines_are_spaced_by_the_interval() -> None:
    console, out = _console(terminal=False)
    with progress_bar(console, interval=3600) as bar:
        task = bar.add_task("encoding", total=100)
        for _ in range(99):
            bar.advance(task)
    logged = [line for line in out.getvalue().splitlines() if line.startswith("encoding ")]
    assert logged[0].startswith("encoding 1/100 (1%)")
    assert len([line for line in logged if "elapsed" in line]) == 1  # then quiet for an hour


def test_terminal_and_quiet_get_no_plain_lines() -> None:
    for terminal, disable in ((True, False), (False, True)):
        console, out = _console(terminal)
        with progress_bar(console, interval=0, disable=disable) as bar:
            task = bar.add_task("indexing", total=2)
            bar.advance(task)
        assert "elapsed" not in out.getvalue()


def test_training_app_imports_without_the_index() -> None:
    """The training app and its progress bar run where lancedb is not installed (a lent
    GPU machine gets only what training needs)."""
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "lancedb":
                    raise ImportError("lancedb is not installed here")
        sys.meta_path.insert(0, Block())
        import speechrag.train.clsr, speechrag.train.seal
        from speechrag.progress import training_bar
        training_bar(quiet=True)
        assert "lancedb" not in sys.modules
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
