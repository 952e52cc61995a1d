"""Counted nouns and lists in messages: ``plural(1, "run")`` -> "1 run", ``join_and(["a", "b"])`` -> "a and b"."""

from __future__ import annotations

from collections.abc import Sequence


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun`` in agreement: "1 run", "2 runs", "3 classes", "1 parallel worker".

    Nouns ending in s, x, z, sh or tch take "es" ("2 batches", but "2 epochs"); give ``many`` for any other plural.
    """
    if count == 1:
        return f"{count} {noun}"
    if many is None:
        many = noun + ("es" if noun.endswith(("s", "x", "z", "sh", "tch")) else "s")
    return f"{count} {many}"


def join_and(items: Sequence[str]) -> str:
    """["a"] -> "a"; ["a", "b", "c"] -> "a, b and c"; [] -> ""."""
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"
