"""README.md's "Your own data" section, run as written: its TOML files are written where their first comment line
says, and each of its commands runs through the CLI in that order, in a folder holding a small `wildlife/` tree.

The first grid is trained for real (8 short runs on 12 images a class) and reported. The paper-scale commands run
with training and step timing replaced by fakes: their options, files, data and grid are all checked as a user
would meet them, but the days of training are not.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench import cli
from bench.grid import GridSummary

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _blocks(section: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    return re.findall(r"```(\w*)\n(.*?)```", section, flags=re.DOTALL)


def _write_wildlife(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for name in ("water-deer", "roe-deer", "wild-boar"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 255, size=(20, 20, 3), dtype=np.uint8)).save(folder / f"{i:03}.jpg")


class _Steps:
    harness_ce = 0.5
    harness_fscl = 0.6


def test_your_own_data_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    _write_wildlife(tmp_path / "wildlife")
    monkeypatch.setattr("bench.dry_run.measure_steps", lambda *args, **kwargs: _Steps())
    planned: list[int] = []

    def fake_grid(spec, *args, **kwargs) -> GridSummary:  # noqa: ANN001
        planned.append(len(spec.cells()))
        return GridSummary(total=len(spec.cells()))

    commands = 0
    for language, body in _blocks(_section("Your own data")):
        if language == "toml":
            target = body.splitlines()[0].removeprefix("# ").strip()
            assert target.endswith(".toml"), body
            (tmp_path / target).write_text(body, encoding="utf-8")
        elif language == "bash":
            for line in body.splitlines():
                command = line.split(" #")[0].strip()
                if not command or command.startswith("#"):
                    continue
                args = shlex.split(command)
                assert args[0] == "bench", command
                paper_scale = args[1] == "run" and "--dry-run" not in args and "runs/first" not in args
                with monkeypatch.context() as patch:
                    if paper_scale:
                        patch.setattr("bench.session.run_grid", fake_grid)
                        patch.setattr("bench.session.TIMED_ESTIMATE_FROM", float("inf"))
                    result = CliRunner().invoke(cli.app, args[1:])
                allowed = (0, 1) if args[1] == "doctor" else (0,)  # doctor exits 1 when it found something
                assert result.exit_code in allowed, f"{command}\n{result.output}"
                assert "Traceback" not in result.output, command
                commands += 1
    assert commands >= 7
    assert len(list((tmp_path / "runs" / "first").glob("*/result.json"))) == 8
    assert (tmp_path / "runs" / "first" / "report.md").is_file()
    assert planned == [250]  # the paper's protocol: 5 ratios x 5 methods x 10 seeds
    assert (tmp_path / "wildlife" / "bench.toml").is_file() and (tmp_path / "grid.toml").is_file()


def test_sweeps_section_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep trains 6 short runs on digits (ce, fscl at two weights, two seeds) and reports them: the weight is
    chosen on validation, every value is listed, and the deployment tables are at the prior the command gives."""
    monkeypatch.chdir(tmp_path)
    (block,) = [body for language, body in _blocks(_section("Sweeps, chosen on validation")) if language == "bash"]
    for command in block.strip().splitlines():
        args = shlex.split(command)
        assert args[0] == "bench", command
        result = CliRunner().invoke(cli.app, args[1:])
        assert result.exit_code == 0, f"{command}\n{result.output}"
    out = tmp_path / "runs" / "sweep"
    names = sorted(p.parent.name for p in out.glob("*/result.json"))
    assert names == [f"fine__resnet18__{m}__r0.1__s{s}" for m in ("ce", "fscl[sim_weight=0.1]", "fscl[sim_weight=1]")
                     for s in (0, 1)]  # fmt: skip
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "Sweeps: settings chosen on validation" in report and "ce+posthoc" in report
    assert "0.01" in report.split("Deployment at the natural frequency")[1][:2000]  # the prior the command gave
    tables = report.split("### Sweeps")[0]
    assert "| fscl | " in tables and "| fscl[sim_weight" not in tables  # one row: the value chosen on validation
    chosen = [line for line in (out / "sweeps.csv").read_text().splitlines()[1:] if line.split(",")[5] == "1"]
    assert len(chosen) == 1 and chosen[0].startswith("fine,resnet18,fscl,0.1,sim_weight=")
