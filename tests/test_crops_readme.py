"""README.md's "From camera-trap photographs" section, run as written on the small camera-trap set the writer's
tests build (md.json, photos/, labels.csv): bench crops, bench doctor on its output, the grid (its --task checked
against the bench.toml bench crops wrote) trained for real on the crops, and its report."""

import re
import shlex
from pathlib import Path

from test_crops_dataset import camera_trap_set
from typer.testing import CliRunner

from bench import cli
from bench.config import load_config_file

README = Path(__file__).resolve().parents[1] / "README.md"


def commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    start = text.index("## From camera-trap photographs\n")
    section = text[start : text.index("\n## ", start + 1)]
    (block,) = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    return [shlex.split(line) for line in block.splitlines() if line.startswith("bench ")]


def test_the_section_runs_as_written(tmp_path, monkeypatch):
    camera_trap_set(tmp_path)
    monkeypatch.chdir(tmp_path)
    crops, doctor, run, report = commands()
    assert [crops[:2], doctor[:2], run[:2], report[:2]] == [
        ["bench", "crops"], ["bench", "doctor"], ["bench", "run"], ["bench", "report"],
    ]  # fmt: skip
    runner = CliRunner()
    made = runner.invoke(cli.app, crops[1:])
    assert made.exit_code == 0, made.output
    assert "detections 12: kept 8" in made.output and "split by location" in made.output
    checked = runner.invoke(cli.app, doctor[1:])
    assert checked.exit_code == 1, checked.output  # lynx sits at one location: train only, which doctor lists
    assert "train: 5 readable images (deer 3, fox 2)" in checked.output
    assert "class lynx cannot be used" in checked.output
    out = Path(run[run.index("--data") + 1])
    tasks = load_config_file(out / "bench.toml", data_root=out).tasks
    assert tasks == {run[run.index("--task") + 1]: ("deer", "fox")}
    trained = runner.invoke(cli.app, run[1:])  # the section's grid, trained for real on the crops
    assert trained.exit_code == 0, trained.output
    assert len(list((tmp_path / "runs" / "crops").glob("*/result.json"))) == 8
    reported = runner.invoke(cli.app, report[1:])
    assert reported.exit_code == 0, reported.output
    assert (tmp_path / "runs" / "crops" / "report.md").is_file()
