"""What the command line shows people: progress bars while it waits and tables that fit the terminal (rich).

Both are for a person at a terminal. Progress goes to standard error and only
when it is a terminal, so what a script reads from standard output (``--format
json``, a CSV, a file's bytes) is exactly the document; a table is a rich table
at a terminal and the plain text table when the output is piped.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

stderr = Console(stderr=True)


def progress(console: Console | None = None) -> Progress:
    """A progress display (spinner, what it waits for, bar, n of m, time); silent when not at a terminal."""
    console = console or stderr
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)


@contextlib.contextmanager
def steps(description: str, names: Sequence[str]) -> Iterator[Step]:
    """``with steps("report", ["database", "count", "render"]) as step: step("count") ...``: one bar, a step each."""
    with progress() as bar:
        task = bar.add_task(f"{description}: {names[0]}" if names else description, total=len(names))
        yield Step(bar, task, description)
        bar.update(task, completed=len(names))


class Step:
    """Advance the bar of :func:`steps` to the next named step."""

    def __init__(self, bar: Progress, task, description: str) -> None:
        self.bar, self.task, self.description, self.done = bar, task, description, 0

    def __call__(self, name: str) -> None:
        """``name`` starts now: the step before it is done."""
        self.bar.update(self.task, completed=self.done, description=f"{self.description}: {name}")
        self.done += 1


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None,
                caption: str | None = None, right: Sequence[int] = ()) -> None:
    """A rich table on standard output, wrapped to the terminal's width (columns in ``right`` right-aligned)."""
    table = Table(title=title, caption=caption, caption_justify="left", expand=False, show_lines=False)
    for index, header in enumerate(headers):
        table.add_column(header, justify="right" if index in right else "left", overflow="fold")
    for row in rows:
        table.add_row(*("-" if v is None or v == "" else str(v) for v in row))
    Console().print(table)
