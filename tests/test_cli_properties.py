"""Property-based tests of the command line's input handling: any ratio, method or seed text and any config
file either plans a grid or exits with code 2 and one line, never with a traceback.

Training is cut off right after planning: ``check_grid`` (the first step after the plan) is replaced by a
function that raises :class:`Planned`, so an accepted input shows up as that exception.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bench import cli
from bench.config import PAPER_DEFAULTS

runner = CliRunner()
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Planned(Exception):
    """The input was accepted and a grid was planned."""


@pytest.fixture(autouse=True)
def stop_after_planning(monkeypatch: pytest.MonkeyPatch) -> None:
    def planned(*args: object, **kwargs: object) -> None:
        raise Planned

    monkeypatch.setattr("bench.session.check_grid", planned)


def outcome(*args: str) -> str:
    """ "planned" or "rejected"; fails the test on anything else (a traceback, another exit code, several lines)."""
    with tempfile.TemporaryDirectory() as out:
        result = runner.invoke(cli.app, ["run", *args, "--out", str(Path(out) / "runs")])
    if isinstance(result.exception, Planned):
        return "planned"
    assert result.exit_code == 2, f"{args}: exit {result.exit_code}, {result.exception!r}\n{result.output}"
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{args}: {result.output!r}"
    return "rejected"


def _number_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(-5, 5).map(str),
        st.sampled_from(["1", "0.1", "0.01", "0.005", "1e-3", "0", "-0.1", "1.5", "nan", "inf", "", " ", "1/10"]),
        st.text(max_size=6),
    )


@PROPERTY_SETTINGS
@given(st.lists(_number_text(), min_size=1, max_size=4).map(",".join))
def test_any_ratio_list_plans_or_is_rejected_in_one_line(text: str) -> None:
    verdict = outcome("--ratios", text, "--methods", "ce")
    parts = [p.strip() for p in text.split(",") if p.strip()]  # empty items are ignored: "1," is "1"
    try:
        valid = bool(parts) and all(0 < float(p) <= 1 for p in parts)
    except ValueError:
        valid = False
    assert verdict == ("planned" if valid else "rejected"), text


_METHOD_PARTS = ["ce", "os", "cb", "fscl", "CE", "fsc", "", " ", "+", "ce+", "os+os", "cb+ce", "x"]


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.one_of(st.lists(st.sampled_from(_METHOD_PARTS), min_size=1, max_size=3).map("+".join), st.text(max_size=5)),
        min_size=1,
        max_size=3,
    ).map(",".join)
)
def test_any_method_list_plans_or_is_rejected_in_one_line(text: str) -> None:
    outcome("--methods", text, "--ratios", "1")


@PROPERTY_SETTINGS
@given(st.one_of(st.integers(-3, 30).map(str), st.text(max_size=5)))
def test_any_seed_count_plans_or_is_rejected_in_one_line(text: str) -> None:
    verdict = outcome("--seeds", text, "--ratios", "1", "--methods", "ce")
    if text.strip().isascii() and text.strip().isdigit() and int(text) >= 1:
        assert verdict == "planned", text


def _toml_value() -> st.SearchStrategy[str]:
    scalar = st.one_of(
        st.integers(-(10**6), 10**6).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(lambda f: json.dumps(f).lower()),
        st.booleans().map(lambda b: str(b).lower()),
        st.text(max_size=8).map(json.dumps),
    )
    return st.one_of(scalar, st.lists(scalar, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"))


_KEYS = [*PAPER_DEFAULTS, "data", "unknown_key", "tasks"]


@PROPERTY_SETTINGS
@given(st.dictionaries(st.sampled_from(_KEYS), _toml_value(), max_size=4), st.binary(max_size=20))
def test_any_config_file_plans_or_is_rejected_in_one_line(entries: dict[str, str], garbage: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.toml"
        text = "".join(f"{key} = {value}\n" for key, value in entries.items())
        path.write_bytes(text.encode() + garbage)
        outcome("--config", str(path))
