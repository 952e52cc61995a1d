"""Whole-command wall time of issue 18's small CIFAR job: ``bench run`` against the same job as a plain loop.

    python reports/speed/small_job.py --data ../shared/data/cifar10 --pairs 3 --json reports/speed/small-job.json

Each pair runs, as fresh subprocesses one after the other (the order alternates from pair to pair),

    bench run --data DATA --classes deer horse --majority-count 1000 --ratios 1 --epochs 2 --seeds 1 --img-size 32
        --methods ce --workers 2 --val-count 100 --out <a new folder>
    python reports/speed/plain_loop.py --data DATA --val-count 100 --workers 2

and prints both wall times and their ratio, bench / plain loop (issue 18's target: at most 0.8), then the median of
the pairs' ratios. Fair terms: the plain loop holds out and evaluates the same number of validation images
(``--val-count``, once after training, as bench does) and decodes with PIL every epoch; bench reads its decode
cache. ``--cache warm`` (default): one untimed bench command first fills a fresh decode cache, as the first command
of a grid does for the rest; ``--cache cold``: every bench command starts from an empty cache (a first command).
``--adam fused`` gives the plain loop bench's fused Adam (the default: torch's default Adam, a plain loop's).

Bench's time is split from its run folder: ``outside`` (start-up, imports, indexing, decoding, check, leaderboard,
exit: the command's wall time less the run's ``wall_seconds``), ``epochs`` (metrics.jsonl) and ``run other``
(building, evaluating and writing the run); the plain loop prints its own phases (plain_loop.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TARGET = 0.8  # issue 18: bench's wall time at most 0.8 x the plain loop's


def bench_command(data: Path, out: Path, val_count: int, *, majority_count: int = 1000, epochs: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "bench", "run", "--data", str(data), "--classes", "deer", "horse",
        "--majority-count", str(majority_count), "--ratios", "1", "--epochs", str(epochs), "--seeds", "1",
        "--img-size", "32", "--methods", "ce", "--workers", "2", "--val-count", str(val_count), "--out", str(out),
    ]  # fmt: skip


def plain_command(data: Path, val_count: int, adam: str) -> list[str]:
    return [
        sys.executable, str(HERE / "plain_loop.py"), "--data", str(data), "--val-count", str(val_count),
        "--workers", "2", "--adam", adam,
    ]  # fmt: skip


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run ``command``; return its wall seconds and stdout. Exit with its stderr's last line if it fails."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        sys.exit(f"small_job: {' '.join(command[:4])} ... failed with exit code {done.returncode}: {last}")
    return seconds, done.stdout


def bench_phases(out: Path, wall: float) -> dict[str, float]:
    """Bench's wall time split from its one run folder: outside the run, the epochs, the rest of the run."""
    (folder,) = [p for p in out.iterdir() if (p / "result.json").is_file()]
    run_seconds = json.loads((folder / "result.json").read_text())["wall_seconds"]
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = sum(row["seconds"] for row in rows)
    return {
        "outside": round(wall - run_seconds, 2),
        "epochs": round(epochs, 2),
        "run other": round(run_seconds - epochs, 2),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    pairs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="small-job-") as scratch_name:
        scratch = Path(scratch_name)
        env = {**os.environ, "BENCH_CACHE": str(scratch / "cache")}
        if args.cache == "warm":
            warm, _ = timed(bench_command(args.data, scratch / "warm", 0, majority_count=2, epochs=1), env)
            print(f"warm-up: bench run filled the decode cache in {warm:.1f} s (not counted)", flush=True)
        for index in range(args.pairs):
            if args.cache == "cold":
                env["BENCH_CACHE"] = str(scratch / f"cache{index}")
            out = scratch / f"out{index}"
            times: dict[str, float] = {}
            plain_record: dict[str, Any] = {}
            for which in ("bench", "plain") if index % 2 == 0 else ("plain", "bench"):
                if which == "bench":
                    times["bench"], _ = timed(bench_command(args.data, out, args.val_count), env)
                else:
                    times["plain"], stdout = timed(plain_command(args.data, args.val_count, args.adam), env)
                    plain_record = json.loads(stdout.strip().splitlines()[-1])
            pair = {
                "first": "bench" if index % 2 == 0 else "plain",
                "bench_seconds": round(times["bench"], 2),
                "plain_seconds": round(times["plain"], 2),
                "bench_over_plain": round(times["bench"] / times["plain"], 3),
                "bench_phases": bench_phases(out, times["bench"]),
                "plain_phases": plain_record["phases"],
            }
            pairs.append(pair)
            print(
                f"pair {index + 1} ({pair['first']} first): bench {pair['bench_seconds']:.1f} s "
                f"{pair['bench_phases']}, plain loop {pair['plain_seconds']:.1f} s {pair['plain_phases']}; "
                f"bench / plain = {pair['bench_over_plain']:.2f}",
                flush=True,
            )
    ratios = [pair["bench_over_plain"] for pair in pairs]
    return {
        "command": " ".join(bench_command(Path("DATA"), Path("OUT"), args.val_count)[1:]),
        "plain_command": " ".join(plain_command(Path("DATA"), args.val_count, args.adam)[1:]),
        "cache": args.cache,
        "adam": args.adam,
        "val_count": args.val_count,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "pairs": pairs,
        "median_bench_over_plain": round(statistics.median(ratios), 3),
        "target": TARGET,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 as an ImageFolder (train/, test/)")
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs of commands")
    parser.add_argument("--val-count", type=int, default=100, help="validation images per class, both commands")
    parser.add_argument("--cache", choices=("warm", "cold"), default="warm", help="bench's decode cache")
    parser.add_argument("--adam", choices=("default", "fused"), default="default", help="the plain loop's Adam")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    for name in ("deer", "horse"):
        for split in ("train", "test"):
            if not (args.data / split / name).is_dir():
                print(f"small_job: no folder {args.data / split / name}; --data must be CIFAR-10 as an ImageFolder",
                      file=sys.stderr)  # fmt: skip
                return 2
    if args.pairs < 1 or args.val_count < 0:
        print("small_job: --pairs must be >= 1 and --val-count >= 0", file=sys.stderr)
        return 2
    args.data = args.data.resolve()
    figures = measure(args)
    median = figures["median_bench_over_plain"]
    print(f"median of {len(figures['pairs'])} paired ratios, bench / plain loop: {median:.2f} (target <= {TARGET})")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
