"""Faults injected into ``bench run``: kill -9, SIGTERM, two processes on one --out, a full disk, a damaged
result file. Finished runs must survive every one of them, and the same command must resume the grid.

The kill and signal tests start ``python -m bench`` as a real process on a 4-run digits grid. The grids train
timm's tiny ``test_resnet`` (0.4 M parameters), so a run takes well under a second and the tests stay fast.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench import cli
from bench import runner as runner_module
from bench.results import RunFolder

runner = CliRunner()
GRID = ["--task", "fine", "--ratios", "1,0.1", "--methods", "ce", "--seeds", "2", "--epochs", "1",
        "--img-size", "16", "--majority-count", "20", "--batch-size", "16", "--backbone", "test_resnet"]  # fmt: skip
RUN_IDS = sorted(f"fine__test_resnet__ce__r{r}__s{s}" for r in ("1", "0.1") for s in (0, 1))
TIMEOUT = 240


def command(out: Path) -> list[str]:
    return [sys.executable, "-m", "bench", "run", *GRID, "--out", str(out)]


def results(out: Path) -> dict[str, str]:
    """run id -> result.json text, for the runs that have one."""
    return {p.parent.name: p.read_text() for p in sorted(out.glob("*/result.json"))}


def start_and_stop_mid_run(out: Path, stop: signal.Signals) -> subprocess.CompletedProcess[str]:
    """Start the grid, wait until one run has finished and the next has begun, then send ``stop``."""
    process = subprocess.Popen(command(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        started = [p for p in out.glob("*/config.json") if not (p.parent / "result.json").exists()]
        if results(out) and started:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the grid ended before it could be interrupted"
    process.send_signal(stop)
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def finish(out: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command(out), capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    return done


def test_kill_9_mid_run_keeps_finished_runs_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    killed = start_and_stop_mid_run(out, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    before = results(out)
    assert before and all(json.loads(text)["status"] == "finished" for text in before.values())
    done = finish(out)
    after = results(out)
    assert sorted(after) == RUN_IDS
    assert {run: after[run] for run in before} == before  # finished runs were skipped, not retrained
    assert f"{len(before)} of 4 runs already finished" in done.stderr


def test_sigterm_stops_cleanly_with_a_resume_hint(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    stopped = start_and_stop_mid_run(out, signal.SIGTERM)
    assert stopped.returncode == 143, stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert (
        last == f"error: interrupted; finished runs are kept in {out}; run the same command with --out {out} to resume"
    )
    assert "Traceback" not in stopped.stderr
    before = results(out)
    assert before and not list(out.glob("*/.*.tmp"))  # no half-written file left behind
    finish(out)
    assert {run: results(out)[run] for run in before} == before


def test_two_processes_on_one_out_never_train_the_same_run(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    processes = [subprocess.Popen(command(out), stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=TIMEOUT)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    trained = [
        {line.split()[1].rstrip(":") for line in text.splitlines() if line.startswith("done ")} for text in outputs
    ]
    assert not trained[0] & trained[1], outputs
    assert sorted(trained[0] | trained[1]) == sorted(results(out)) == RUN_IDS


def test_a_run_locked_by_a_live_process_is_left_to_it(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    held = RunFolder(out / RUN_IDS[0])
    with held.claimed() as claimed:
        assert claimed
        result = runner.invoke(cli.app, ["run", *GRID, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"elsewhere {RUN_IDS[0]}: another bench run process is training it" in result.output
    assert "3 runs finished, 0 failed, 0 already done, 1 left to another process" in result.output
    assert sorted(results(out)) == RUN_IDS[1:]
    # The lock file of a process that is gone does not block anyone: the same command now trains that run.
    assert held.lock.exists()
    again = runner.invoke(cli.app, ["run", *GRID, "--out", str(out)])
    assert again.exit_code == 0 and sorted(results(out)) == RUN_IDS


def test_full_disk_is_one_line_and_keeps_finished_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "runs"
    real_finish = RunFolder.finish
    calls = []

    def finish_then_fill_the_disk(self: RunFolder, config, payload):  # noqa: ANN001, ANN202
        calls.append(self.path.name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.result))
        return real_finish(self, config, payload)

    monkeypatch.setattr(RunFolder, "finish", finish_then_fill_the_disk)
    result = runner.invoke(cli.app, ["run", *GRID, "--out", str(out)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("error")]
    reason = f"[Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}: '{out / calls[1] / 'result.json'}'"
    assert lines == [
        f"error: cannot write results: {reason}; "
        f"finished runs are kept in {out}; fix that and run the same command with --out {out} to resume"
    ]
    assert list(results(out)) == [calls[0]]


def test_damaged_result_is_not_taken_as_finished(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert runner.invoke(cli.app, ["run", *GRID, "--out", str(out)]).exit_code == 0
    before = results(out)
    damaged = out / RUN_IDS[0] / "result.json"
    damaged.write_text(before[RUN_IDS[0]][:40])  # cut short, as a hand edit or a bad copy might
    result = runner.invoke(cli.app, ["run", *GRID, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 of 4 runs already finished" in result.output and f"done {RUN_IDS[0]}" in result.output
    after = results(out)
    assert json.loads(after[RUN_IDS[0]])["status"] == "finished"
    assert {run: after[run] for run in RUN_IDS[1:]} == {run: before[run] for run in RUN_IDS[1:]}


def test_a_run_whose_loss_turns_nan_is_recorded_as_failed_and_the_grid_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cb runs' loss turns NaN in their second epoch; the engine's own check must catch it."""
    real_epoch = runner_module.train_one_epoch
    epochs_seen: dict[int, int] = {}

    def poisoned(model, loader, loss_fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        epochs_seen[id(loss_fn)] = epochs_seen.get(id(loss_fn), 0) + 1
        if loss_fn.base_name == "cb" and epochs_seen[id(loss_fn)] == 2:
            real_forward = loss_fn.forward
            loss_fn.forward = lambda *a: (lambda total, terms: (total * float("nan"), terms))(*real_forward(*a))
        return real_epoch(model, loader, loss_fn, *args, **kwargs)

    monkeypatch.setattr(runner_module, "train_one_epoch", poisoned)
    out = tmp_path / "runs"
    grid = ["--task", "fine", "--ratios", "1", "--methods", "ce,cb", "--seeds", "2", "--epochs", "3", "--img-size",
            "16", "--majority-count", "20", "--batch-size", "16", "--backbone", "test_resnet"]  # fmt: skip
    result = runner.invoke(cli.app, ["run", *grid, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 runs finished, 2 failed, 0 already done" in result.output
    for seed in (0, 1):
        failed = json.loads((out / f"fine__test_resnet__cb__r1__s{seed}" / "result.json").read_text())
        assert failed["status"] == "failed" and failed["failure"]["epoch"] == 2
        assert failed["failure"]["reason"].startswith("training loss is not finite")
        assert len((out / f"fine__test_resnet__cb__r1__s{seed}" / "metrics.jsonl").read_text().splitlines()) == 1
        finished = json.loads((out / f"fine__test_resnet__ce__r1__s{seed}" / "result.json").read_text())
        assert finished["status"] == "finished"
    # a failed run is a result: the same command does not train it again, and the report counts it in its cell
    again = runner.invoke(cli.app, ["run", *grid, "--out", str(out)])
    assert "4 of 4 runs already finished" in again.output, again.output
    report = runner.invoke(cli.app, ["report", str(out)])
    assert report.exit_code == 0, report.output
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    cb = next(row for row in rows if row["method"] == "cb")
    assert (cb["n"], cb["n_failed"]) == ("0", "2")
    assert "✗2" in (out / "leaderboard.md").read_text()


def test_run_files_get_the_permissions_open_would_give_them(tmp_path: Path) -> None:
    """Atomic writes go through mkstemp, which makes files 0600: colleagues on a shared --out could not read them."""
    from bench.results import UMASK, write_json_atomic

    write_json_atomic(tmp_path / "result.json", {"status": "finished"})
    assert (tmp_path / "result.json").stat().st_mode & 0o777 == 0o666 & ~UMASK
    assert json.loads((tmp_path / "result.json").read_text()) == {"status": "finished"}
