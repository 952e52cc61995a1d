"""``bench run --dry-run``: the grid and what --out already holds, and a cost estimate whose arithmetic is checked
by hand against a fixed step time; nothing is trained or written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench import cli
from bench import dry_run as dry_run_module
from bench.plan import plan_run
from bench.results import RunFolder
from bench.speed import StepFigures

runner = CliRunner()
# digits "fine" is 1 vs 8; 20 majority images: ratio 1 -> 20 + 20 = 40 images (3 steps of 16), 0.1 -> 20 + 2 = 22
# images (2 steps).
GRID = ["--task", "fine", "--ratios", "1,0.1", "--methods", "ce,fscl", "--seeds", "2", "--epochs", "3",
        "--img-size", "16", "--majority-count", "20", "--batch-size", "16", "--backbone", "test_resnet"]  # fmt: skip
CE_STEP, FSCL_STEP = 0.5, 0.75  # seconds per step, without and with the similarity loss's taps


@pytest.fixture
def timed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Replace the timed steps by fixed times; record what was timed (backbone, image size, batch size)."""
    calls: list[tuple[str, int, int]] = []

    def fake_measure_steps(backbone: str, img_size: int, batch_size: int, setup: object, **kwargs: object):
        calls.append((backbone, img_size, batch_size))
        return StepFigures(img_size, batch_size, minimal=0.1, harness_ce=CE_STEP, harness_fscl=FSCL_STEP,
                           harness_over_minimal=0.1 / CE_STEP, fscl_over_ce=FSCL_STEP / CE_STEP)  # fmt: skip

    monkeypatch.setattr(dry_run_module, "measure_steps", fake_measure_steps)
    return calls


def finish_some(out: Path, seeds: int) -> list[str]:
    """Write a finished result for every cell of the grid with seed < ``seeds`` (as a completed run would)."""
    options = {"ratios": "1,0.1", "methods": "ce,fscl", "seeds": 2, "epochs": 3, "img_size": 16,
               "majority_count": 20, "batch_size": 16, "backbones": "test_resnet"}  # fmt: skip
    plan = plan_run(data=None, config_path=None, task_names=("fine",), classes=None, options=options)
    done = []
    for cell in plan.spec.cells():
        if cell.seed < seeds:
            RunFolder(out / cell.run_id).finish(cell, {"status": "finished", "failure": None, "metrics": {}})
            done.append(cell.run_id)
    return done


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_dry_run_trains_and_writes_nothing(tmp_path: Path, timed: list) -> None:
    out = tmp_path / "runs"
    result = runner.invoke(cli.app, ["run", *GRID, "--dry-run", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not out.exists()
    assert f"dry run: 8 runs in the grid, 0 finished in {out}, 8 to train" in result.output
    assert "done " not in result.output
    assert timed == [("test_resnet", 16, 16)]  # one timing per backbone, at the grid's image and batch size


def test_dry_run_counts_the_runs_a_partly_finished_out_holds(tmp_path: Path, timed: list) -> None:
    out = tmp_path / "runs"
    assert len(finish_some(out, seeds=1)) == 4
    before = snapshot(out)
    result = runner.invoke(cli.app, ["run", *GRID, "--dry-run", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert snapshot(out) == before  # not a file added, changed or locked
    assert f"dry run: 8 runs in the grid, 4 finished in {out}, 4 to train" in result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| fine ")]
    assert rows == [
        "| fine | test_resnet | ce | 1 | 2 | 1 | 1 | 40 | 1.5 |",
        "| fine | test_resnet | fscl | 1 | 2 | 1 | 1 | 40 | 2.2 |",
        "| fine | test_resnet | ce | 0.1 | 2 | 1 | 1 | 22 | 1.0 |",
        "| fine | test_resnet | fscl | 0.1 | 2 | 1 | 1 | 22 | 1.5 |",
    ]
    finish_some(out, seeds=2)
    again = runner.invoke(cli.app, ["run", *GRID, "--dry-run", "--out", str(out)])
    assert "8 finished" in again.output and "every run is finished; nothing to estimate" in again.output


def test_estimate_arithmetic_by_hand(tmp_path: Path, timed: list) -> None:
    # Per seed, 3 epochs of: ce r1 3 x 0.5 + fscl r1 3 x 0.75 + ce r0.1 2 x 0.5 + fscl r0.1 2 x 0.75 = 6.25 s an
    # epoch -> 18.75 s; two seeds 37.5 s. The longest run is fscl at ratio 1: 3 epochs x 2.25 s = 6.75 s.
    result = runner.invoke(cli.app, ["run", *GRID, "--dry-run", "--parallel", "3", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("estimate:"))
    assert line == (
        "estimate: 8 runs, 24 epochs, 37.5 s of training (0.01 h); wall time with 3 parallel workers: 12.5 s"
    )
    options = {"ratios": "1,0.1", "methods": "ce,fscl", "seeds": 2, "epochs": 3, "img_size": 16,
               "majority_count": 20, "batch_size": 16, "backbones": "test_resnet"}  # fmt: skip
    plan = plan_run(data=None, config_path=None, task_names=("fine",), classes=None, options=options)
    from bench.device import resolve_device

    setup = resolve_device("cpu")
    wide = dry_run_module.estimate_grid(plan.spec, plan.source, tmp_path / "r", setup, parallel=8, threads=1)
    assert wide.total_seconds == pytest.approx(37.5)
    assert wide.wall_seconds == pytest.approx(6.75)  # 8 workers: bounded by the longest run, not 37.5 / 8
    assert sorted({cost.steps_per_epoch for cost in wide.remaining}) == [2, 3]


def test_default_parallel_comes_from_the_executor_and_this_machine() -> None:
    cores = os.cpu_count() or 1
    assert dry_run_module.default_parallel("local", 1.0, None) == 1
    assert dry_run_module.default_parallel("ray", 1.0, 0.0) == cores
    assert dry_run_module.default_parallel("ray", 2.0, 0.0) == max(1, cores // 2)


def test_a_run_with_a_checkpoint_is_estimated_from_where_it_resumes(tmp_path: Path, timed: list) -> None:
    import torch

    from bench.checkpoint import Checkpoints, TrainingState
    from bench.runner import create_scheduler

    options = {"ratios": "1,0.1", "methods": "ce,fscl", "seeds": 2, "epochs": 3, "img_size": 16,
               "majority_count": 20, "batch_size": 16, "backbones": "test_resnet"}  # fmt: skip
    cells = plan_run(data=None, config_path=None, task_names=("fine",), classes=None, options=options).spec.cells()
    out = tmp_path / "runs"
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    state = TrainingState(model, optimizer, create_scheduler(optimizer, cells[0].settings), None, torch.nn.Identity())
    ce_r1_s0 = next(cell for cell in cells if (cell.method, cell.ratio, cell.seed) == ("ce", 1.0, 0))
    (out / ce_r1_s0.run_id).mkdir(parents=True)
    Checkpoints(RunFolder(out / ce_r1_s0.run_id).checkpoint, ce_r1_s0, workers=0, minutes=0).save(
        state, 2, 1.0, ["{}\n", "{}\n"]
    )
    other = next(cell for cell in cells if (cell.method, cell.ratio, cell.seed) == ("fscl", 1.0, 0))
    (out / other.run_id).mkdir(parents=True)  # a checkpoint saved under another run's settings does not count
    Checkpoints(RunFolder(out / other.run_id).checkpoint, ce_r1_s0, workers=0, minutes=0).save(
        state, 2, 1.0, ["{}\n", "{}\n"]
    )
    before = snapshot(out)
    result = runner.invoke(cli.app, ["run", *GRID, "--dry-run", "--parallel", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert snapshot(out) == before
    assert f"1 of them resumes from a checkpoint: {ce_r1_s0.run_id} after epoch 2" in result.output
    # 37.5 s for the whole grid less the 2 epochs x 1.5 s the checkpoint already holds
    line = next(line for line in result.output.splitlines() if line.startswith("estimate:"))
    assert line == (
        "estimate: 8 runs, 22 epochs, 34.5 s of training (0.01 h); wall time with 3 parallel workers: 11.5 s"
    )


def test_notes_on_ratios_the_data_cannot_give_sit_under_the_table(tmp_path: Path, timed: list) -> None:
    """One run, one epoch, one worker: singular nouns; 0.01 and 0.001 of 60 majority images both train 60 vs 1."""
    grid = ["--task", "fine", "--ratios", "0.01,0.001", "--methods", "ce", "--seeds", "1", "--epochs", "1",
            "--img-size", "16", "--majority-count", "60", "--batch-size", "16",
            "--backbone", "test_resnet"]  # fmt: skip
    result = runner.invoke(cli.app, ["run", *grid, "--dry-run", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    table_end = max(i for i, line in enumerate(lines) if line.startswith("| fine "))
    assert lines[table_end + 1 : table_end + 6] == [
        "",
        "what the data gives (from the indexed images; bench doctor counts the readable ones):",
        "  task fine: ratio 0.01 asks 0.6 minority images of 60; it gets 1 (actual ratio 0.0167)",
        "  task fine: ratio 0.001 asks 0.06 minority images of 60; it gets 1 (actual ratio 0.0167)",
        "  task fine: ratios 0.01 and 0.001 give the same training subset (60 vs 1)",
    ]
    single = runner.invoke(cli.app, ["run", *grid[:3], "0.01", *grid[4:], "--dry-run", "--out", str(tmp_path / "r")])
    assert "dry run: 1 run in the grid" in single.output
    line = next(line for line in single.output.splitlines() if line.startswith("estimate:"))
    assert line.startswith("estimate: 1 run, 1 epoch, ") and line.endswith(
        "wall time with 1 parallel worker: 2.0 s"
    )  # 4 steps


def test_the_estimate_counts_steps_as_the_loader_makes_them(tmp_path: Path, timed: list) -> None:
    """Ratio 0.05 of 20 majority images: 20 + 1 = 21 images; at batch 10 the last batch of one folds into the one
    before (2 steps, not 3). With --oversample-epoch full, os draws 2 x 20 = 40 images an epoch (4 steps)."""
    base = ["--task", "fine", "--ratios", "0.05", "--seeds", "1", "--epochs", "2", "--img-size", "16",
            "--majority-count", "20", "--batch-size", "10", "--backbone", "test_resnet"]  # fmt: skip
    for methods, extra, seconds in (("ce,os", [], 2 * 2 * 2 * CE_STEP), ("os", ["--oversample-epoch", "full"],
                                    2 * 4 * CE_STEP)):  # fmt: skip
        result = runner.invoke(
            cli.app, ["run", *base, "--methods", methods, *extra, "--dry-run", "--out", str(tmp_path)]
        )
        assert result.exit_code == 0, result.output
        assert f"{seconds:.1f} s of training" in result.output, result.output


def test_training_images_leave_out_the_validation_images(tmp_path: Path) -> None:
    """train/a 10 and train/b 6 images: validation holds out min(100, n // 2) = 5 and 3, so ratio 1 trains on
    5 + min(5, 3) = 8 images an epoch; --val-count 0, or a val/ of its own beside test/, leaves all 10 + 6 = 16."""
    from PIL import Image

    root = tmp_path / "data"
    for split, counts in (("train", {"a": 10, "b": 6}), ("test", {"a": 1, "b": 1})):
        for name, count in counts.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (4, 4), (i, 0, 0)).save(root / split / name / f"{i}.png")

    def images(**options: object) -> int:
        grid = {"ratios": "1", "methods": "ce", "seeds": 1, "majority_count": 1000, **options}
        plan = plan_run(data=str(root), config_path=None, task_names=(), classes=("a", "b"), options=grid)
        (cell,) = plan.spec.cells()
        return dry_run_module.train_images(plan.source, cell)

    assert images() == 8 and images(val_count=0) == 16
    for name in ("a", "b"):
        (root / "val" / name).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(root / "val" / name / "0.png")
    assert images() == 16
