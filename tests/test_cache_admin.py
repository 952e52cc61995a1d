"""bench cache: listing the decode cache; removing unused, orphaned or all entries and abandoned builders' folders."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from bench import cli
from bench.data import decode_split_cached, open_source
from bench.data.cache_admin import LEFTOVER_GRACE_SECONDS, scan, select_for_removal

runner = CliRunner()
DAY = 86400


def make_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name, count in (("deer", 3), ("horse", 5)):
        (root / "train" / name).mkdir(parents=True)
        (root / "test" / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(root / "train" / name / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(root / "test" / name / "0.png")
    return root


def fill(tmp_path: Path) -> tuple[Path, Path]:
    data, cache = make_folder(tmp_path / "data"), tmp_path / "cache"
    decode_split_cached(open_source(data).train, ["deer", "horse"], 8, cache, threads=1)
    return data, cache


def age(entry: Path, days: float) -> None:
    past = time.time() - days * DAY
    os.utime(entry / "meta.json", (past, past))


def test_scan_lists_each_class_with_its_images_bytes_and_folder(tmp_path: Path) -> None:
    data, cache = fill(tmp_path)
    entries, leftovers = scan(cache)
    assert [(e.name, e.img_size, e.images) for e in entries] == [("deer", 8, 3), ("horse", 8, 5)]
    for entry in entries:
        meta = (entry.path / "meta.json").stat().st_size
        assert entry.bytes == entry.images * 8 * 8 * 3 + meta
        assert entry.root == str((data / "train").resolve()) and not entry.orphaned
    assert leftovers == []


def test_a_read_refreshes_last_use_and_unused_selects_by_it(tmp_path: Path) -> None:
    data, cache = fill(tmp_path)
    for entry in scan(cache)[0]:
        age(entry.path, 10)
    decode_split_cached(open_source(data).train, ["horse"], 8, cache, threads=1)  # reads horse's entry only
    entries = scan(cache)[0]
    used = {e.name: time.time() - e.last_used for e in entries}
    assert used["deer"] > 9 * DAY and used["horse"] < DAY
    assert [e.name for e in select_for_removal(entries, unused_days=5)] == ["deer"]
    assert [e.name for e in select_for_removal(entries, unused_days=11)] == []


def test_cli_lists_then_removes_unused_orphaned_and_all(tmp_path: Path) -> None:
    data, cache = fill(tmp_path)
    listed = runner.invoke(cli.app, ["cache", "--cache-dir", str(cache)])
    assert listed.exit_code == 0, listed.output
    assert (
        f"| {(data / 'train').resolve()} | horse | 8 | stretch | 5 |" in listed.output and "2 entries" in listed.output
    )

    age(scan(cache)[0][0].path, 30)  # deer
    removed = runner.invoke(cli.app, ["cache", "--cache-dir", str(cache), "--unused", "7"])
    assert removed.exit_code == 0 and "removed 1 entries" in removed.output and "1 entries left" in removed.output
    assert [e.name for e in scan(cache)[0]] == ["horse"]

    kept = runner.invoke(cli.app, ["cache", "--cache-dir", str(cache), "--orphaned"])
    assert "removed 0 entries" in kept.output  # its folder is still there
    (data / "train").rename(data / "moved")
    assert "(gone)" in runner.invoke(cli.app, ["cache", "--cache-dir", str(cache)]).output
    gone = runner.invoke(cli.app, ["cache", "--cache-dir", str(cache), "--orphaned"])
    assert "removed 1 entries" in gone.output and scan(cache)[0] == []

    (data / "moved").rename(data / "train")
    fill_again = decode_split_cached(open_source(data).train, ["deer", "horse"], 8, cache, threads=1)
    assert len(fill_again.labels) == 8 and len(scan(cache)[0]) == 2
    cleared = runner.invoke(cli.app, ["cache", "--cache-dir", str(cache), "--clear"])
    assert "removed 2 entries" in cleared.output and scan(cache)[0] == []
    assert "is empty" in runner.invoke(cli.app, ["cache", "--cache-dir", str(cache)]).output


def test_only_abandoned_builder_folders_are_removed(tmp_path: Path) -> None:
    _, cache = fill(tmp_path)
    decoded = cache / "decoded"
    old = time.time() - 2 * LEFTOVER_GRACE_SECONDS
    names = {
        "dead_old": f".tmp-{'a' * 64}-999999999-0f0f",  # no such process, old: abandoned
        "alive_old": f".tmp-{'b' * 64}-{os.getpid()}-0f0f",  # this process: maybe still building
        "dead_new": f".trash-{'c' * 64}-999999999-0f0f",  # no such process but just written: grace period
    }
    for key, name in names.items():
        folder = decoded / name
        folder.mkdir()
        (folder / "images.u8").write_bytes(b"x" * 100)
        if key.endswith("old"):
            os.utime(folder, (old, old))
    listed = runner.invoke(cli.app, ["cache", "--cache-dir", str(cache)])
    assert "3 temporary folders" in listed.output and "1 of them abandoned" in listed.output
    runner.invoke(cli.app, ["cache", "--cache-dir", str(cache), "--unused", "1000"])
    remaining = sorted(p.name for p in decoded.iterdir() if p.name.startswith("."))
    assert remaining == sorted([names["alive_old"], names["dead_new"]])
    assert len(scan(cache)[0]) == 2  # the entries were used just now


def test_bad_cache_dir_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["cache", "--cache-dir", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "is not a folder" in result.output
    assert len(result.output.strip().splitlines()) == 1
