"""The per-class index of ImageFolder trees (bench.data.index): kept between commands, refreshed by exactly the changes
that matter, the one source of the data fingerprint and the decode cache's keys, and never listing a class folder a
command does not use."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench import cli
from bench.data import open_source
from bench.data.cache import ClassFiles, entry_key
from bench.data.index import ClassIndex
from bench.plan import plan_run

runner = CliRunner()
TINY = ["--epochs", "1", "--img-size", "8", "--seeds", "1", "--batch-size", "4", "--ratios", "1", "--methods", "ce",
        "--val-count", "1", "--backbone", "resnet18"]  # fmt: skip
CLASSES = ("deer", "horse", "zebra")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))


def _png(path: Path, seed: int, width: int = 10) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(9, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _age(root: Path) -> None:
    """Set every folder's mtime an hour back, as a tree that was not just written (the index keeps no folder that
    changed in the last seconds)."""
    past = os.stat(root).st_mtime - 3600
    for folder, _, _ in os.walk(root):
        os.utime(folder, (past, past))


def _tree(root: Path, per_class: int = 3) -> Path:
    seed = 0
    for split in ("train", "test"):
        for name in CLASSES:
            for i in range(per_class):
                seed += 1
                _png(root / split / name / f"{i}.png", seed)
    _png(root / "train" / "deer" / "night" / "a.png", 99)  # a sub-folder of a class folder
    _age(root)
    return root


def test_an_unchanged_class_is_not_listed_again(tmp_path: Path) -> None:
    folder = _tree(tmp_path / "data") / "train" / "deer"
    first = ClassIndex(tmp_path / "cache")
    record = first.record(folder)
    assert first.walked == 1 and record.names == ("0.png", "1.png", "2.png", os.path.join("night", "a.png"))
    again = ClassIndex(tmp_path / "cache")
    assert again.record(folder) == record and again.walked == 0
    assert ClassIndex(None).record(folder) == record  # without a cache: the same record, listed afresh


def test_a_just_changed_folder_is_not_kept(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "train" / "deer"
    _png(folder / "0.png", 1)  # written now: its folder's mtime could still move within one clock tick
    ClassIndex(tmp_path / "cache").record(folder)
    again = ClassIndex(tmp_path / "cache")
    again.record(folder)
    assert again.walked == 1


@pytest.mark.parametrize("change", ["added", "removed", "renamed", "rewritten", "touched"])
def test_a_changed_file_changes_the_fingerprint_and_the_cache_key(tmp_path: Path, change: str) -> None:
    root = _tree(tmp_path / "data")
    cache = tmp_path / "cache"
    before = open_source(root, cache_dir=cache, classes=("deer", "horse"))
    folder = root / "train" / "horse"
    if change == "added":
        _png(folder / "3.png", 50)
    elif change == "removed":
        (folder / "1.png").unlink()
    elif change == "renamed":
        (folder / "1.png").rename(folder / "9.png")
    elif change == "rewritten":  # in place, same name and folder (the folder's mtime does not move)
        _png(folder / "1.png", 51, width=12)
    else:  # the same bytes written again: a new mtime
        data = (folder / "1.png").read_bytes()
        (folder / "1.png").write_bytes(data)
        os.utime(folder / "1.png", ns=(1, 1))
    after = open_source(root, cache_dir=cache, classes=("deer", "horse"))

    def key(source) -> str:
        record = source.train.records["horse"]
        files = ClassFiles("horse", "", tuple(record.paths(folder)), record.resolved_paths(),
                           tuple(zip(record.sizes, record.mtimes, strict=True)))  # fmt: skip
        return entry_key(files.resolved, 8, "stretch", files.stats)

    assert key(after) != key(before)
    task = ("deer", "horse")
    if change == "touched":  # the fingerprint leaves mtimes out: a copy of the data set keeps its identity
        assert after.fingerprint_of(task) == before.fingerprint_of(task)
    else:
        assert after.fingerprint_of(task) != before.fingerprint_of(task)
    assert after.fingerprint_of(("deer", "zebra")) == before.fingerprint_of(("deer", "zebra"))  # not its classes


def test_the_cache_key_from_the_record_is_the_one_from_the_files(tmp_path: Path) -> None:
    """Decode cache entries written before the index stay valid: the key from the record's stats equals the key
    from stat'ing each file's real path, symbolic links included."""
    root = _tree(tmp_path / "data")
    elsewhere = tmp_path / "elsewhere.png"
    _png(elsewhere, 7)
    (root / "train" / "deer" / "linked.png").symlink_to(elsewhere)
    record = ClassIndex(None).record(root / "train" / "deer")
    resolved = record.resolved_paths()
    assert resolved[record.names.index("linked.png")] == os.path.realpath(elsewhere)
    stats = tuple(zip(record.sizes, record.mtimes, strict=True))
    by_stat = entry_key([os.path.realpath(p) for p in record.paths(root / "train" / "deer")], 8)
    assert entry_key(resolved, 8, "stretch", stats) == by_stat


def test_classes_a_command_does_not_use_are_never_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "data")
    listed: list[str] = []
    original = ClassIndex.record

    def record(self: ClassIndex, class_folder: Path):  # noqa: ANN202
        listed.append(Path(class_folder).relative_to(root).as_posix())
        return original(self, class_folder)

    monkeypatch.setattr(ClassIndex, "record", record)
    (root / "bench.toml").write_text('[tasks.fine]\nclasses = ["deer", "horse"]\n')
    result = runner.invoke(cli.app, ["run", "--data", str(root), "--task", "fine", "--dry-run", *TINY])
    assert result.exit_code == 0, result.output
    assert sorted(listed) == ["test/deer", "test/horse", "train/deer", "train/horse"]
    listed.clear()
    result = runner.invoke(cli.app, ["doctor", "--data", str(root), "--classes", "zebra", "deer", "--ratios", "1"])
    assert sorted(listed) == ["test/deer", "test/zebra", "train/deer", "train/zebra"], result.output
    listed.clear()
    typo = runner.invoke(cli.app, ["run", "--data", str(root), "--classes", "deer", "zebar", "--dry-run", *TINY])
    assert (
        typo.exit_code == 2 and "did you mean 'zebra'" in typo.output and "classes: deer, horse, zebra" in typo.output
    )
    assert "zebra" not in " ".join(listed)
    listed.clear()
    unknown = runner.invoke(cli.app, ["run", "--data", str(root), "--task", "nope", "--dry-run", *TINY])
    assert unknown.exit_code == 2 and "unknown task 'nope'" in unknown.output and listed == []
    result = runner.invoke(cli.app, ["tasks", "--data", str(root)])  # a listing of the data set lists every class
    assert result.exit_code == 0 and len(listed) == 6, result.output


def test_runs_stay_finished_when_another_class_folder_changes(tmp_path: Path) -> None:
    """A task's runs are keyed by its own classes' fingerprint: adding a class folder to the archive (or changing
    one the task does not use) leaves them finished; changing one of its classes makes them another run's."""
    root = _tree(tmp_path / "data", per_class=4)
    out = tmp_path / "runs"
    args = ["run", "--data", str(root), "--classes", "deer", "horse", *TINY, "--out", str(out)]
    assert runner.invoke(cli.app, args).exit_code == 0
    result_file = out / "deer-vs-horse__resnet18__ce__r1__s0" / "result.json"
    recorded = json.loads(result_file.read_text())["config"]["data_fingerprint"]
    plan = plan_run(data=str(root), config_path=None, task_names=(), classes=("deer", "horse"), options={})
    assert recorded == plan.source.fingerprint_of(("deer", "horse")) == plan.spec.cells()[0].data_fingerprint
    for i in range(2):
        _png(root / "train" / "wolf" / f"{i}.png", 70 + i)
        _png(root / "test" / "wolf" / f"{i}.png", 80 + i)
    _png(root / "train" / "zebra" / "new.png", 90)
    again = runner.invoke(cli.app, [*args, "--dry-run"])
    assert again.exit_code == 0 and "1 finished in" in again.output and "0 to train" in again.output, again.output
    _png(root / "test" / "horse" / "new.png", 91)
    changed = runner.invoke(cli.app, [*args, "--dry-run"])  # the finished run was trained on other data
    assert changed.exit_code == 2 and "holds a finished run with different settings (data_fingerprint" in changed.output
    assert "the task's images changed" in changed.output


def test_an_unwritable_index_cache_changes_nothing(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    source = open_source(root, cache_dir=blocked, classes=("deer", "horse"))
    fresh = open_source(root, cache_dir=tmp_path / "cache", classes=("deer", "horse"))
    assert source.fingerprint == fresh.fingerprint and source.train.paths == fresh.train.paths
    kept = sorted((tmp_path / "cache" / "index").glob("*.json"))
    assert len(kept) == 4 and all(json.loads(file.read_text())["format"] == 1 for file in kept)


def test_each_task_is_keyed_by_its_own_classes(tmp_path: Path) -> None:
    """fine's runs have one fingerprint whether the grid also has coarse or not, so adding a task to a resumed grid
    finds its finished runs."""
    root = _tree(tmp_path / "data")
    (root / "bench.toml").write_text(
        '[tasks.fine]\nclasses = ["deer", "horse"]\n[tasks.coarse]\nclasses = ["deer", "zebra"]\n'
    )

    def fingerprints(*tasks: str) -> dict[str, str]:
        plan = plan_run(data=str(root), config_path=None, task_names=tasks, classes=None, options={})
        return {cell.task: cell.data_fingerprint for cell in plan.spec.cells()}

    both = fingerprints("fine", "coarse")
    assert both["fine"] == fingerprints("fine")["fine"] and both["coarse"] == fingerprints("coarse")["coarse"]
    assert both["fine"] != both["coarse"]


def test_bench_cache_lists_and_removes_kept_records(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    cache = tmp_path / "cache"
    open_source(root, cache_dir=cache, classes=("deer", "horse"))
    listing = runner.invoke(cli.app, ["cache", "--cache-dir", str(cache)])
    assert listing.exit_code == 0 and f"index of 4 class folders in {cache}/index" in listing.output, listing.output
    assert ", 0 of them gone" in listing.output
    shutil.rmtree(root / "test" / "horse")
    orphaned = runner.invoke(cli.app, ["cache", "--cache-dir", str(cache), "--orphaned"])
    assert orphaned.exit_code == 0 and "and 1 index records" in orphaned.output, orphaned.output
    assert len(list((cache / "index").glob("*.json"))) == 3
    cleared = runner.invoke(cli.app, ["cache", "--cache-dir", str(cache), "--clear"])
    assert "and 3 index records" in cleared.output and not list((cache / "index").glob("*.json"))
