"""Start-up cost against the size of an ImageFolder archive: indexing only the classes a command uses, cold and warm.

    python reports/speed/index_scale.py --tree /tmp/big-tree --json reports/speed/index-scale.json

Builds (once; reused when it exists) a tree of 100 classes x 2,000 train + 200 test JPEGs (220,000 files, hard links
to one small JPEG a class, as issue 18 measured), then times, each in a fresh Python process, ``--rounds`` times:

- ``open_source`` of 2 and of 20 classes, cold (empty index cache) and warm (the index kept by the cold call);
- torchvision's ``ImageFolder`` scanning the whole train split (torch's import included), the baseline;
- the whole command ``bench run --data TREE --classes class000 class001 --ratios 0.1 --methods ce --seeds 1
  --epochs 1 --img-size 32 --dry-run``, cold and warm;
- ``bench tasks --data TREE``, which lists every class (all 100 indexed), cold and warm.

"Cold" is an empty index cache, not an empty OS page cache (dropping that needs root). Prints a table of medians and
writes every timing to --json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES, TRAIN, TEST = 100, 2000, 200


def build_tree(root: Path) -> None:
    """root/{train,test}/classNNN/NNNNN.jpg, every file a hard link to its class's 32 x 32 JPEG (a marker file says
    the tree is complete)."""
    if (root / ".complete").is_file():
        return
    from PIL import Image

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for c in range(CLASSES):  # one source JPEG a class: a file takes at most 65,000 links on ext4
        source = root / f".source{c:03}.jpg"
        Image.new("RGB", (32, 32), (120, 90, c)).save(source, quality=90)
        for split, count in (("train", TRAIN), ("test", TEST)):
            folder = root / split / f"class{c:03}"
            folder.mkdir(parents=True)
            for i in range(count):
                os.link(source, folder / f"{i:05}.jpg")
    past = time.time() - 3600  # an archive that was not just written (the index keeps no folder changed seconds ago)
    for folder, _, _ in os.walk(root):
        os.utime(folder, (past, past))
    (root / ".complete").write_text("")


def timed(code: str, env: dict[str, str]) -> float:
    """Wall seconds of ``python -c code`` in a fresh process (its import of bench included)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def timed_command(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "bench", *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"bench {' '.join(args)} failed ({result.returncode}): {result.stdout[-500:]}{result.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, required=True, help="where the 220,000-file tree is built (or reused)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    build_tree(args.tree)
    print(f"tree ready in {time.perf_counter() - started:.1f} s: {args.tree}", file=sys.stderr)
    tree = str(args.tree)
    two = [f"class{c:03}" for c in range(2)]
    twenty = [f"class{c:03}" for c in range(20)]
    measures: dict[str, list[float]] = {}
    cache = Path(tempfile.mkdtemp(prefix="bench-index-"))
    env = {**os.environ, "BENCH_CACHE": str(cache)}

    def add(name: str, seconds: float) -> None:
        measures.setdefault(name, []).append(seconds)
        print(f"  {name}: {seconds:.2f} s", file=sys.stderr)

    for round_ in range(args.rounds):
        print(f"round {round_ + 1} of {args.rounds}", file=sys.stderr)
        for label, classes in (("2 classes", two), ("20 classes", twenty)):
            code = f"from bench.data import open_source; open_source({tree!r}, classes={classes!r})"
            shutil.rmtree(cache / "index", ignore_errors=True)
            add(f"open_source, {label}, cold", timed(code, env))
            add(f"open_source, {label}, warm", timed(code, env))
        scan = f"from torchvision.datasets import ImageFolder; ImageFolder({tree + '/train'!r})"
        add("torchvision ImageFolder(train), whole tree", timed(scan, env))
        run = ["run", "--data", tree, "--classes", *two, "--ratios", "0.1", "--methods", "ce", "--seeds", "1",
               "--epochs", "1", "--img-size", "32", "--dry-run", "--out", str(cache / "runs")]  # fmt: skip
        shutil.rmtree(cache / "index", ignore_errors=True)
        add("bench run --dry-run (2 classes), cold", timed_command(run, env))
        add("bench run --dry-run (2 classes), warm", timed_command(run, env))
        shutil.rmtree(cache / "index", ignore_errors=True)
        add("bench tasks (all 100 classes), cold", timed_command(["tasks", "--data", tree], env))
        add("bench tasks (all 100 classes), warm", timed_command(["tasks", "--data", tree], env))
    shutil.rmtree(cache, ignore_errors=True)
    print(f"\n{CLASSES} classes x ({TRAIN} train + {TEST} test) files; median of {args.rounds} rounds")
    print("| what | median s | all |")
    print("|:---|---:|:---|")
    for name, values in measures.items():
        print(f"| {name} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
    if args.json is not None:
        record = {
            "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
            "python": platform.python_version(),
            "tree": {"classes": CLASSES, "train_per_class": TRAIN, "test_per_class": TEST},
            "rounds": args.rounds,
            "seconds": measures,
            "median_seconds": {name: statistics.median(values) for name, values in measures.items()},
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
