"""``bench run --executor ray``: a tiny grid on a local Ray instance gives the local executor's files, a worker
process killed mid-run is retried, and the base install runs (and explains itself) without Ray.

The Ray tests share one local instance of 2 CPUs (module fixture) and skip when Ray is not installed; the grid is
4 runs of timm's tiny ``test_resnet``, 2 at a time (``--cpus-per-run 1``).
"""

from __future__ import annotations

import ast
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bench import cli
from bench.remote_run import CRASH_ONCE_ENV
from bench.results import RunFiles, RunFolder

runner = CliRunner()
GRID = ["--task", "fine", "--ratios", "1,0.1", "--methods", "ce", "--seeds", "2", "--epochs", "1",
        "--img-size", "16", "--majority-count", "20", "--batch-size", "16", "--backbone", "test_resnet"]  # fmt: skip
RAY = ["--executor", "ray", "--cpus-per-run", "1"]
RUN_IDS = sorted(f"fine__test_resnet__ce__r{r}__s{s}" for r in ("1", "0.1") for s in (0, 1))


@pytest.fixture(scope="module")
def ray_session() -> Iterator[ModuleType]:
    """One local Ray instance with 2 CPUs for the module; bench joins it instead of starting its own."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    from bench.remote_run import threads_for

    # Warm both worker processes up (importing torch and bench takes seconds) while the local grid trains.
    ray.remote(threads_for).options(num_cpus=1).remote(1.0)
    ray.remote(threads_for).options(num_cpus=1).remote(1.0)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The grid by the local executor, on one torch thread like a Ray run with one CPU."""
    out = tmp_path_factory.mktemp("local") / "runs"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = runner.invoke(cli.app, ["run", *GRID, "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return out


def comparable_config(folder: RunFolder) -> dict[str, object]:
    """config.json less the sources of the flags in RAY, which only the Ray command gives."""
    config = json.loads(folder.config.read_text())
    ray_flags = {flag.removeprefix("--").replace("-", "_") for flag in RAY if flag.startswith("--")}
    config["sources"] = {key: value for key, value in config.get("sources", {}).items() if key not in ray_flags}
    return config


def assert_same_runs(expected: Path, actual: Path) -> None:
    """Every run folder holds the same numbers: results, subsets, per-epoch losses, test outputs, configs."""
    assert sorted(p.parent.name for p in actual.glob("*/result.json")) == RUN_IDS
    for run in RUN_IDS:
        a, b = RunFolder(expected / run), RunFolder(actual / run)
        result_a, result_b = (json.loads(f.result.read_text()) for f in (a, b))
        assert result_b["status"] == "finished"
        for key in ("metrics", "train_counts", "test_counts", "actual_ratio", "config"):
            assert result_b[key] == result_a[key], (run, key)
        assert b.subset.read_bytes() == a.subset.read_bytes()
        rows_a, rows_b = ([json.loads(line) for line in f.metrics.read_text().splitlines()] for f in (a, b))
        assert [{k: v for k, v in row.items() if k != "seconds"} for row in rows_b] == [
            {k: v for k, v in row.items() if k != "seconds"} for row in rows_a
        ]
        with np.load(a.outputs) as outputs_a, np.load(b.outputs) as outputs_b:
            for name in ("logits", "features", "labels"):
                np.testing.assert_array_equal(outputs_b[name], outputs_a[name])
        assert comparable_config(b) == comparable_config(a)
        assert (actual / run / ".lock").exists()  # the driver claimed the run while its task was in flight


def test_ray_grid_matches_the_local_executor(ray_session: ModuleType, local_out: Path, tmp_path: Path) -> None:
    """4 runs, 2 at a time: the same result, subset, per-epoch losses, test outputs and config as the local run."""
    from bench.ray_executor import parallel_slots

    assert parallel_slots(ray_session, 1.0, 0.0) == 2  # two runs at a time on the 2-CPU instance
    out = tmp_path / "runs"
    result = runner.invoke(cli.app, ["run", *GRID, *RAY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(line.split()[1].rstrip(":") for line in result.output.splitlines() if line.startswith("done ")) == (
        RUN_IDS
    )
    assert "4 runs finished, 0 failed, 0 already done" in result.output
    assert_same_runs(local_out, out)
    # resume rules as the local executor's: a second pass trains nothing
    again = runner.invoke(cli.app, ["run", *GRID, *RAY, "--out", str(out)])
    assert again.exit_code == 0 and "4 of 4 runs already finished" in again.output, again.output


def test_a_killed_worker_is_retried_and_the_grid_completes(
    ray_session: ModuleType, local_out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "crashed-once"
    monkeypatch.setenv(CRASH_ONCE_ENV, f"{RUN_IDS[0]}={marker}")
    out = tmp_path / "runs"
    result = runner.invoke(cli.app, ["run", *GRID, *RAY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert marker.exists()  # the first attempt at RUN_IDS[0] did kill its worker process
    assert "4 runs finished, 0 failed" in result.output and "lost" not in result.output
    assert_same_runs(local_out, out)


def test_a_run_from_elsewhere_is_stored_like_a_local_one(local_out: Path, tmp_path: Path) -> None:
    """What a worker sends back, written by the driver: the same bytes; a failed attempt drops stale outputs."""
    source = RunFolder(local_out / RUN_IDS[0])
    files = source.read_files()
    target = RunFolder(tmp_path / RUN_IDS[0])
    assert target.store(files) == files.result
    for name in files.files:
        assert (target.path / name).read_bytes() == (source.path / name).read_bytes()
    failed = {**files.result, "status": "failed", "failure": {"reason": "training loss is not finite", "epoch": 1}}
    without_outputs = {k: v for k, v in files.files.items() if k != "test_outputs.npz"}
    target.store(RunFiles({**without_outputs, "result.json": json.dumps(failed).encode()}, failed))
    assert not target.outputs.exists() and target.read_result()["status"] == "failed"
    assert not list(target.path.glob(".*.tmp"))


NO_RAY = """
import sys
sys.modules["ray"] = None  # import ray now fails, as in an install without the ray extra
from typer.testing import CliRunner
from bench import cli
out = sys.argv[1]
grid = {grid!r}
local = CliRunner().invoke(cli.app, ["run", *grid, "--out", out])
ray = CliRunner().invoke(cli.app, ["run", *grid, "--executor", "ray", "--out", out + "-ray"])
print(local.exit_code, ray.exit_code, repr(ray.output))
"""


def test_without_ray_the_local_executor_runs_and_ray_is_a_one_line_hint(tmp_path: Path) -> None:
    grid = [*GRID[:2], "--ratios", "1", *GRID[4:6], "--seeds", "1", *GRID[8:]]  # one run
    out = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-c", NO_RAY.format(grid=grid), str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    local_code, ray_code, output = done.stdout.strip().splitlines()[-1].split(" ", 2)
    assert (local_code, ray_code) == ("0", "2"), done.stdout
    assert len(list(out.glob("*/result.json"))) == 1
    assert ast.literal_eval(output) == (
        'error: --executor ray needs Ray, which is not installed; install it with pip install ".[ray]" in the bench '
        "folder (or pip install ray), or use --executor local\n"
    )
    assert not (tmp_path / "runs-ray").exists()


def test_a_gpu_share_on_a_cluster_without_gpus_is_a_one_line_error(ray_session: ModuleType, tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["run", *GRID, *RAY, "--gpus-per-run", "0.5", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1].startswith("error: no Ray node has 1 CPUs and 0.5 GPUs free for one run")
    assert not list((tmp_path / "r").glob("*/result.json"))


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--executor", "slurm", "--executor must be one of local, ray, got 'slurm'"),
        ("--gpus-per-run", "1.5", "--gpus-per-run must be a fraction of one GPU (e.g. 0.25) or a whole number"),
        ("--gpus-per-run", "-1", "--gpus-per-run must lie in [0, inf)"),
        ("--cpus-per-run", "0", "--cpus-per-run must lie in (0, inf)"),
    ],
)
def test_bad_executor_options_are_one_line_errors(option: str, value: str, message: str, tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["run", *GRID, option, value, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {message}") and len(result.output.splitlines()) == 1, result.output


def test_a_worker_process_prepares_each_task_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import remote_run
    from bench.data import open_source

    calls = []
    real = remote_run.prepare_task
    monkeypatch.setattr(remote_run, "_TASKS", {})
    monkeypatch.setattr(remote_run, "prepare_task", lambda *a, **k: calls.append(a[1:3]) or real(*a, **k))
    source = open_source("digits")
    first = remote_run.cached_task(source, ("1", "8"), 16, None)
    assert remote_run.cached_task(source, ("1", "8"), 16, None) is first
    remote_run.cached_task(source, ("0", "1"), 16, None)
    assert calls == [(("1", "8"), 16), (("0", "1"), 16)]
    assert [remote_run.threads_for(c) for c in (0.25, 1, 1.5, 4)] == [1, 1, 1, 4]


def test_a_run_resumes_on_ray_from_a_checkpoint_in_the_shared_checkpoint_dir(
    ray_session: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped after epoch 2 leaves its checkpoint in --checkpoint-dir; a Ray worker, whose run folder is a
    fresh temporary one, resumes it there and the driver stores what the uninterrupted run would have written."""
    from bench import runner as runner_module

    one = ["run", "--task", "fine", "--ratios", "1", "--methods", "fscl", "--seeds", "1", "--epochs", "4",
           "--img-size", "16", "--majority-count", "20", "--batch-size", "16", "--backbone", "test_resnet",
           "--workers", "0", "--checkpoint-minutes", "0", "--checkpoint-dir", str(tmp_path / "shared")]  # fmt: skip
    run_id = "fine__test_resnet__fscl__r1__s0"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray run with one CPU
    try:
        assert runner.invoke(cli.app, [*one, "--out", str(tmp_path / "straight")]).exit_code == 0
        real, calls = runner_module.train_one_epoch, []

        def stop_at_third(*args: object, **kwargs: object) -> dict[str, float]:
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(runner_module, "train_one_epoch", stop_at_third)
            stopped = runner.invoke(cli.app, [*one, "--out", str(tmp_path / "runs")])
    finally:
        torch.set_num_threads(threads)
    assert stopped.exit_code == 130
    assert (tmp_path / "shared" / run_id / "checkpoint.pt").exists()
    assert not (tmp_path / "runs" / run_id / "checkpoint.pt").exists()
    result = runner.invoke(cli.app, [*one, *RAY, "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    resumed, straight = RunFolder(tmp_path / "runs" / run_id), RunFolder(tmp_path / "straight" / run_id)
    assert json.loads(resumed.result.read_text())["resumed_after_epochs"] == [2]
    assert json.loads(resumed.result.read_text())["metrics"] == json.loads(straight.result.read_text())["metrics"]
    rows = [[json.loads(line) for line in f.metrics.read_text().splitlines()] for f in (resumed, straight)]
    for row in (*rows[0], *rows[1]):
        row.pop("seconds")
    assert rows[0] == rows[1] and len(rows[0]) == 4
    with np.load(resumed.outputs) as a, np.load(straight.outputs) as b:
        np.testing.assert_array_equal(a["logits"], b["logits"])
    assert not (tmp_path / "shared" / run_id / "checkpoint.pt").exists()


def test_a_worker_decodes_the_own_validation_split_only_when_the_grid_validates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the local executor: at --val-count 0 a worker does not decode the data set's own val/ split."""
    from PIL import Image

    from bench import remote_run
    from bench.data import open_source

    for split in ("train", "test", "val"):
        for name, colour in (("a", 40), ("b", 200)):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (8, 8), (colour, i, 0)).save(folder / f"{i}.png")
    monkeypatch.setattr(remote_run, "_TASKS", {})
    source = open_source(tmp_path / "data", cache_dir=tmp_path / "cache")
    without = remote_run.cached_task(source, ("a", "b"), 8, None, validation=False)
    assert without.val_images is None and without.val_split == ""
    validated = remote_run.cached_task(source, ("a", "b"), 8, None)
    assert validated.val_split == "val" and len(validated.val_images) == 6
