"""Minority and balanced test accuracy of `--randaug-strength fixed` against `uniform`, per method, paired by seed.

python reports/augment/compare_strengths.py RUNS_FIXED RUNS_UNIFORM   (two `bench run --out` folders of one grid)

Reads result.json files only. Prints Markdown: mean ± sd per method and strength, then per method and metric the
paired differences fixed - uniform (the same seed trains on the same subset), their mean with a 95% Student-t
interval and the exact two-sided sign-flip p-value.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from reports.collect import RunRecord, collect_runs
from reports.statistics import sign_flip_p_value, t_interval

METRICS = ("test_minority_acc", "test_balanced_acc")


def by_method_and_seed(runs_dir: Path) -> dict[str, dict[int, RunRecord]]:
    """Finished runs of `runs_dir` as method -> seed -> record; warnings and unfinished runs are printed."""
    collection = collect_runs(runs_dir)
    for warning in collection.warnings:
        print(f"warning: {warning}")
    runs: dict[str, dict[int, RunRecord]] = {}
    for record in collection.records:
        if record.status != "finished":
            print(f"warning: {record.path}: {record.status}, left out")
            continue
        runs.setdefault(record.method, {})[record.seed] = record
    return runs


def mean_sd(values: Sequence[float]) -> str:
    interval = t_interval(values)
    if interval.mean is None:
        return "-"
    spread = "" if interval.std is None else f" ± {interval.std:.3f}"
    return f"{interval.mean:.3f}{spread} (n = {interval.n})"


def paired_row(method: str, metric: str, fixed: dict[int, RunRecord], uniform: dict[int, RunRecord]) -> str:
    seeds = sorted(set(fixed) & set(uniform))
    diffs = [fixed[s].metrics[metric] - uniform[s].metrics[metric] for s in seeds]
    interval = t_interval(diffs)
    each = ", ".join(f"{d:+.3f}" for d in diffs)
    if interval.low is None or interval.high is None or interval.mean is None:
        summary = "-" if interval.mean is None else f"{interval.mean:+.3f}"
    else:
        summary = f"{interval.mean:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"
    p_value = sign_flip_p_value(diffs)
    p_text = "-" if p_value is None else f"{p_value:.2f}"
    return f"| {method} | {metric} | {each} | {summary} | {p_text} |"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixed", type=Path, help="runs folder of --randaug-strength fixed")
    parser.add_argument("uniform", type=Path, help="runs folder of --randaug-strength uniform")
    args = parser.parse_args(argv)
    strengths = {"fixed": by_method_and_seed(args.fixed), "uniform": by_method_and_seed(args.uniform)}
    methods = sorted(set(strengths["fixed"]) | set(strengths["uniform"]))

    print("| method | strength | minority acc | balanced acc | wall s a run |")
    print("|:---|:---|---:|---:|---:|")
    for method in methods:
        for strength, runs in strengths.items():
            records = list(runs.get(method, {}).values())
            accuracies = [mean_sd([r.metrics[metric] for r in records]) for metric in METRICS]
            walls = [r.wall_seconds for r in records if r.wall_seconds is not None]
            wall = f"{sum(walls) / len(walls):.0f}" if walls else "-"
            print(f"| {method} | {strength} | {accuracies[0]} | {accuracies[1]} | {wall} |")

    print()
    print("| method | metric | fixed - uniform, seeds in order | mean [95% t-interval] | sign-flip p |")
    print("|:---|:---|:---|:---|---:|")
    for method in methods:
        for metric in METRICS:
            fixed, uniform = strengths["fixed"].get(method, {}), strengths["uniform"].get(method, {})
            print(paired_row(method, metric, fixed, uniform))


if __name__ == "__main__":
    main()
