"""Small text helpers shared by the Markdown and CSV renderers."""

from __future__ import annotations

NO_DATA = "—"


def fmt_ratio(ratio: float) -> str:
    """Imbalance ratio as a column header / CSV value: ``1``, ``0.01``."""
    return f"{ratio:g}"


def fmt_float(value: float | None) -> str:
    """CSV number: 6 significant digits, empty string for None."""
    return "" if value is None else f"{value:.6g}"


def md_escape(text: str) -> str:
    """Escape the Markdown table separator."""
    return text.replace("|", "\\|")
