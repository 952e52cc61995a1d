"""Counted nouns in messages: "1 run", not "1 runs"."""

from __future__ import annotations

import io

from rich.console import Console

from bench.progress import RichGridObserver
from bench.wording import join_and, plural


def test_plural_and_join() -> None:
    assert [plural(1, "run"), plural(2, "run"), plural(0, "epoch"), plural(3, "epoch")] == [
        "1 run", "2 runs", "0 epochs", "3 epochs"
    ]  # fmt: skip
    assert plural(1, "parallel worker") == "1 parallel worker" and plural(2, "class") == "2 classes"
    assert plural(4, "batch") == "4 batches" and plural(2, "datum", "data") == "2 data"
    assert [join_and([]), join_and(["a"]), join_and(["a", "b"]), join_and(["a", "b", "c"])] == [
        "", "a", "a and b", "a, b and c"
    ]  # fmt: skip


def test_progress_says_one_run() -> None:
    out = io.StringIO()
    observer = RichGridObserver(Console(file=out, width=200))
    observer.grid_started(total=1, done=1)
    observer.grid_started(total=3, done=2)
    assert out.getvalue().splitlines() == [
        "1 of 1 run already finished in this folder: skipping them",
        "2 of 3 runs already finished in this folder: skipping them",
    ]
