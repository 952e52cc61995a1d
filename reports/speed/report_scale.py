"""Time ``bench report`` over many run folders generated from a template (no training).

    python reports/speed/report_scale.py --sizes 10000,30000,100000 --json reports/speed/report_scale.json

A smoke test: ``python reports/speed/report_scale.py --sizes 500``. The template is a tiny real run (``bench run
--ratios 1,0.1 --methods ce,cb --seeds 1 --epochs 1`` on the built-in digits, made in a temporary folder, about a
minute) unless ``--template`` names a folder of finished run folders. Each size gets a fresh tree: run folders of
three data sets x tasks x three backbones (one report section each, 280 runs), methods ce, os, cb (cb_beta swept over
three values, chosen on validation), focal and ldam, four ratios and ten seeds per cell; a tree cut off mid-section
leaves that section's last cells with missing seeds, as a sweep between resumes does. The sizes grow one tree (as
resumes do), the report written into the same folder each time. Each folder gets its own ``result.json``
(its fields and metrics varied per run, so the tables have spread); its logits, per-epoch metrics and config are hard
links to the template's files. Generation is not timed.

Timed: ``bench report TREE --out OUT`` with the default flags (``--posthoc all``, figures, gallery), each in a
subprocess. A report keeps each run's post-hoc row in ``TREE/.bench-report/`` and each section's figures with what
they were drawn from, so what a report costs depends on what earlier reports left:

- ``cold`` (``--cold`` runs, default 280 = one section): nothing kept, every post-hoc row scored (tens of ms a run);
- ``first``: the first report of the tree, whose runs' post-hoc rows are filled in untimed as reports after earlier
  resumes would have left them (scored once per template x ratio: the values a fresh scoring gives): it draws the
  figures (of the first 6 sections). At the first size only;
- ``again``: a re-report; at a larger size, after the tree grew (the new runs' post-hoc rows filled in as above): the
  figures are reused, as the first sections did not change. Every size.

Printed per pass: wall time, CPU time (user + system) and peak resident memory of the report process (``os.wait4``'s
rusage), CPU seconds per 1,000 runs, and for ``again`` the ratio of CPU time per run against the first size (1.0 =
linear). On a shared machine the wall time includes waiting for a core; the report is one process on one core, so its
CPU time is what it costs. ``--flags`` adds report
options (e.g. ``--no-gallery``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATASETS = ("digits", "/archive/camtrap-north", "/archive/camtrap-south")
BACKBONES = ("resnet18", "convnext_tiny", "efficientnet_b0")
#: (method, swept settings): each a row label of every cell.
LABELS: tuple[tuple[str, dict[str, float]], ...] = (
    ("ce", {}),
    ("os", {}),
    ("cb", {"cb_beta": 0.99}),
    ("cb", {"cb_beta": 0.999}),
    ("cb", {"cb_beta": 0.9999}),
    ("focal", {}),
    ("ldam", {}),
)
RATIOS = (1.0, 0.5, 0.1, 0.02)
SEEDS = 10
LINKED_FILES = ("config.json", "metrics.jsonl", "test_outputs.npz", "val_outputs.npz")
MAJORITY_COUNT = 68


def _bench() -> list[str]:
    found = shutil.which("bench", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-c", "from bench.cli import app; app()"]


def make_template(work: Path) -> Path:
    """Train the tiny grid on digits in ``work``; return the folder holding its run folders."""
    out = work / "template"
    command = [*_bench(), "run", "--ratios", "1,0.1", "--methods", "ce,cb", "--seeds", "1", "--epochs", "1"]
    subprocess.run([*command, "--out", str(out)], check=True, cwd=work, stdout=subprocess.DEVNULL)
    return out


def template_runs(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The finished run folders of ``folder`` that hold every file a generated run links to, with their results."""
    runs = []
    for run in sorted(p for p in folder.iterdir() if (p / "result.json").is_file()):
        result = json.loads((run / "result.json").read_text(encoding="utf-8"))
        if result.get("status") == "finished" and all((run / name).is_file() for name in LINKED_FILES):
            runs.append((run, result))
    if not runs:
        raise SystemExit(f"{folder}: no finished run folder with {', '.join(LINKED_FILES)}")
    return runs


def _jitter(*parts: object) -> float:
    """A deterministic number in [-1, 1] from ``parts``."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") / 2**31 - 1.0


def _varied(metrics: dict[str, Any], key: tuple[object, ...]) -> dict[str, Any]:
    """The template's metrics with each accuracy-like scalar moved by up to 0.05 (clipped to [0, 1])."""
    varied = {}
    for name, value in metrics.items():
        if isinstance(value, float) and 0.0 <= value <= 1.0:
            value = min(1.0, max(0.0, value + 0.05 * _jitter(name, *key)))
        varied[name] = value
    return varied


def run_plan(n: int) -> list[dict[str, Any]]:
    """The first ``n`` runs of the generated sweep, section by section (a section = a task of one data set x a
    backbone). Task names carry the section's number, so the report lists the sections in the order they are made:
    its first sections (those with figures) are complete in every tree and the same in a larger one."""
    plan: list[dict[str, Any]] = []
    section = 0
    while len(plan) < n:
        dataset = DATASETS[section % len(DATASETS)]
        backbone = BACKBONES[section // len(DATASETS) % len(BACKBONES)]
        task = f"{Path(dataset).name}-t{section // (len(DATASETS) * len(BACKBONES)):03d}"
        for seed in range(SEEDS):
            for ratio in RATIOS:
                for method, sweep in LABELS:
                    plan.append(dict(dataset=dataset, task=task, backbone=backbone, method=method, sweep=sweep,
                                     ratio=ratio, seed=seed))  # fmt: skip
        section += 1
    return plan[:n]


def generate(tree: Path, n: int, template: list[tuple[Path, dict[str, Any]]], start: int = 0) -> None:
    """Write runs ``start`` to ``n`` of :func:`run_plan` into ``tree``: a result.json each, the other files hard links
    (copies if links fail)."""
    tree.mkdir(parents=True, exist_ok=True)
    for index, run in enumerate(run_plan(n)[start:], start):
        source, result = template[index % len(template)]
        label = run["method"] + "".join(f"-{k}{v:g}" for k, v in run["sweep"].items())
        folder = tree / f"{run['task']}__{run['backbone']}__{label}__r{run['ratio']:g}__s{run['seed']}"
        folder.mkdir()
        key = (run["task"], run["backbone"], label, run["ratio"], run["seed"])
        minority = max(1, round(MAJORITY_COUNT * run["ratio"]))
        classes = result["classes"]
        config = {**result["config"], **run["sweep"], "dataset": run["dataset"], "task": run["task"],
                  "backbone": run["backbone"], "method": run["method"], "ratio": run["ratio"], "seed": run["seed"],
                  "sweep": run["sweep"]}  # fmt: skip
        data = {
            **result,
            "run_id": folder.name,
            "task": run["task"],
            "dataset": run["dataset"],
            "backbone": run["backbone"],
            "method": run["method"],
            "sweep": run["sweep"],
            "ratio": run["ratio"],
            "seed": run["seed"],
            "metrics": _varied(result["metrics"], key),
            "train_counts": {classes[0]: MAJORITY_COUNT, classes[1]: minority},
            "actual_ratio": round(minority / MAJORITY_COUNT, 6),
            "deploy_prior": {
                classes[0]: MAJORITY_COUNT / (MAJORITY_COUNT + minority),
                classes[1]: minority / (MAJORITY_COUNT + minority),
            },  # fmt: skip
            "wall_seconds": round(10.0 + 2.0 * _jitter("wall", *key), 3),
            "config": config,
        }
        (folder / "result.json").write_text(json.dumps(data), encoding="utf-8")
        for name in LINKED_FILES:
            try:
                os.link(source / name, folder / name)
            except OSError:
                shutil.copyfile(source / name, folder / name)


def fill_posthoc_cache(tree: Path) -> None:
    """Keep every run's post-hoc row in the tree's cache, as earlier reports would have: scored once per template
    (its outputs, hard-linked) and ratio (its training counts and deploy prior), then stored for each run."""
    from reports import collect_runs
    from reports.posthoc import cache_version, posthoc_record
    from reports.posthoc_cache import CACHE_FOLDER, PosthocCache, file_key

    cache = PosthocCache(tree / CACHE_FOLDER, cache_version())
    scored: dict[tuple[int, int, float], dict[str, float]] = {}
    warnings: list[str] = []
    for record in collect_runs(tree).records:
        outputs = (record.folder / "val_outputs.npz").stat().st_ino, (record.folder / "test_outputs.npz").stat().st_ino
        key = (*outputs, record.ratio)
        if key not in scored:
            row = posthoc_record(record, warnings)
            if row is None:
                raise SystemExit(f"cannot score {record.folder}: {warnings}")
            scored[key] = row.metrics
        stamp = file_key(record.folder)
        if stamp is not None:
            cache.put(record, stamp, scored[key])
    problem = cache.save()
    if problem is not None:
        raise SystemExit(problem)


def time_report(tree: Path, out: Path, flags: list[str]) -> tuple[float, float, float, int]:
    """Run ``bench report`` once; (wall seconds, CPU seconds (user + system), peak RSS of that process in MiB, exit
    code)."""
    start = time.perf_counter()
    process = subprocess.Popen([*_bench(), "report", str(tree), "--out", str(out), *flags],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    stderr = process.stderr.read() if process.stderr is not None else b""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        print(stderr.decode(errors="replace")[-2000:], file=sys.stderr)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, process.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000", help="run folders per tree, comma-separated")
    parser.add_argument("--template", type=Path, help="a folder of finished run folders [a tiny digits run]")
    parser.add_argument("--work", type=Path, help="where the trees go [a temporary folder, removed]")
    parser.add_argument("--flags", default="", help="extra bench report options, e.g. '--no-gallery'")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--cold", type=int, default=280, help="runs of the cold pass (nothing kept); 0: none")
    args = parser.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: expected numbers separated by commas")
    if not sizes or min(sizes) < 1:
        parser.error("--sizes: at least one size of at least 1")
    work = args.work or Path(tempfile.mkdtemp(prefix="report-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    flags = args.flags.split()
    try:
        template = template_runs(args.template or make_template(work))
        rows = []
        print(f"bench report {' '.join(['TREE', '--out', 'OUT', *flags])}; {len(template)} template runs")
        print(f"{'runs':>8} {'sections':>8} {'prepare s':>10} {'pass':>5} {'wall s':>7} {'cpu s':>7} {'peak MiB':>8} "
              f"{'cpu s/1k':>8} {'vs first':>8}")  # fmt: skip
        passes = [(args.cold, ("cold",))] if args.cold > 0 else []
        passes += [(n, ("first", "again") if i == 0 else ("again",)) for i, n in enumerate(sorted(sizes))]
        grown = 0
        for n, attempts in passes:
            tree, out = (
                work / ("cold" if attempts[0] == "cold" else "runs"),
                work / ("cold-out" if attempts[0] == "cold" else "out"),
            )
            if attempts[0] in ("cold", "first"):
                shutil.rmtree(tree, ignore_errors=True)
                shutil.rmtree(out, ignore_errors=True)
                grown = 0
            start = time.perf_counter()
            generate(tree, n, template, start=grown)
            grown = n
            if attempts[0] != "cold":
                fill_posthoc_cache(tree)
            generated = time.perf_counter() - start
            sections = len({(r["task"], r["backbone"]) for r in run_plan(n)})
            for attempt in attempts:
                wall, cpu, peak, code = time_report(tree, out, flags)
                per_k = cpu / n * 1000
                first = next((r["cpu_s_per_1k"] for r in rows if r["pass"] == attempt), per_k)
                rows.append({"runs": n, "sections": sections, "prepare_s": round(generated, 1), "pass": attempt,
                             "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_mib": round(peak),
                             "cpu_s_per_1k": round(per_k, 3), "vs_first": round(per_k / first, 2),
                             "exit_code": code})  # fmt: skip
                print(f"{n:>8} {sections:>8} {generated:>10.1f} {attempt:>5} {wall:>7.2f} {cpu:>7.2f} {peak:>8.0f} "
                      f"{per_k:>8.3f} {per_k / first:>8.2f}" + ("" if code == 0 else f"  exit code {code}"),
                      flush=True)  # fmt: skip
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json is not None:
        machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
        figures = {"command": " ".join(sys.argv), "flags": flags, "machine": machine, "rows": rows}
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
