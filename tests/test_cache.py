"""The decode cache: same pixels as decode_split, no decoding the second time, invalidation by file, concurrent
builders, damaged entries, and `bench run` reusing it (CPU, small images made here)."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench import cli
from bench.data import DataError, DecodedImages, ImageSplit, ImageStack, decode_split, decode_split_cached
from bench.data import decode as decode_module

SIZE = 16


def make_split(root: Path) -> ImageSplit:
    """Classes a (JPEG) and b (PNG), 6 images each of different sizes, interleaved in the split, plus a broken a."""
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(6):
        for label, (name, ext) in enumerate((("a", ".jpg"), ("b", ".png"))):
            path = root / name / f"{i:02d}{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (20 + 3 * i, 30 - 2 * i, 3), dtype=np.uint8)).save(path)
            paths.append(path)
            labels.append(label)
    broken = root / "a" / "zz-broken.jpg"
    broken.write_bytes(b"not a JPEG")
    paths.insert(5, broken)
    labels.insert(5, 0)
    return ImageSplit(classes=("a", "b"), labels=np.asarray(labels), paths=tuple(paths))


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every file read_image decodes from now on."""
    read, real = [], decode_module.read_image

    def counting(path: Path, size: int, resize: str = "stretch") -> np.ndarray:
        read.append(path)
        return real(path, size, resize)

    monkeypatch.setattr(decode_module, "read_image", counting)
    return read


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "decoded").iterdir() if not p.name.startswith("."))


def skip_warning(classes: list[str]) -> contextlib.AbstractContextManager:
    """Class a has one broken file: decoding it warns once."""
    return pytest.warns(UserWarning, match="skipped 1 of") if "a" in classes else contextlib.nullcontext()


def cached(split: ImageSplit, classes: list[str], cache: Path, **kwargs: object) -> DecodedImages:
    with skip_warning(classes):
        return decode_split_cached(split, classes, SIZE, cache, **kwargs)


def fresh(split: ImageSplit, classes: list[str]) -> DecodedImages:
    with skip_warning(classes):
        return decode_split(split, classes, SIZE)


def assert_same(got: DecodedImages, expected: DecodedImages) -> None:
    assert isinstance(got.images, ImageStack)
    assert got.images.shape == expected.images.shape
    assert np.array_equal(np.asarray(got.images), expected.images)
    assert all(np.array_equal(got.images[i], expected.images[i]) for i in range(len(expected.images)))
    assert np.array_equal(got.labels, expected.labels)
    assert np.array_equal(got.source_indices, expected.source_indices)
    assert got.skipped == expected.skipped


@pytest.mark.parametrize("classes", [["a", "b"], ["b", "a"], ["a"], ["b"]])
def test_cached_pixels_equal_a_fresh_decode(tmp_path: Path, classes: list[str]) -> None:
    split = make_split(tmp_path / "data")
    expected = fresh(split, classes)
    first = cached(split, classes, tmp_path / "cache")
    assert_same(first, expected)
    assert_same(cached(split, classes, tmp_path / "cache"), expected)
    if "a" in classes:
        assert len(first.skipped) == 1 and first.skipped[0].startswith(f"{split.paths[5]}: ")
    meta = json.loads((entries(tmp_path / "cache")[0] / "meta.json").read_text())
    assert {"format", "img_size", "class", "root", "shape", "kept", "skipped"} <= set(meta)


def test_second_call_decodes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    split = make_split(tmp_path / "data")
    read = count_reads(monkeypatch)
    cached(split, ["a", "b"], tmp_path / "cache")
    assert len(read) == 13
    calls: list[tuple[int, int]] = []
    again = cached(split, ["a", "b"], tmp_path / "cache", progress=lambda done, total: calls.append((done, total)))
    assert len(read) == 13  # nothing decoded
    assert calls[-1] == (13, 13) and len(again.images) == 12
    assert all(isinstance(part, np.memmap) for part in again.images.parts)


def test_changed_file_invalidates_only_its_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    split = make_split(tmp_path / "data")
    cached(split, ["a", "b"], tmp_path / "cache")
    changed = split.paths[0]  # a/00.jpg
    Image.new("RGB", (9, 9), (250, 10, 10)).save(changed)
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    read = count_reads(monkeypatch)
    again = cached(split, ["a", "b"], tmp_path / "cache")
    class_a = [os.path.realpath(p) for p, label in zip(split.paths, split.labels, strict=True) if label == 0]
    assert sorted(map(os.path.realpath, read)) == sorted(class_a)  # b came from its entry
    assert np.abs(again.images[0][4, 4].astype(int) - (250, 10, 10)).max() <= 3  # the new (JPEG) pixels
    monkeypatch.undo()
    assert_same(again, fresh(split, ["a", "b"]))
    assert len(entries(tmp_path / "cache")) == 3  # a before, a after, b


def _build_in_child(split: ImageSplit, cache: str, barrier, results) -> None:
    """Decode class a through the cache, in lockstep with another process; send back what it got and read."""
    real, read = decode_module.read_image, []

    def in_lockstep(path: Path, size: int, resize: str = "stretch") -> np.ndarray:
        barrier.wait(timeout=60)
        read.append(path)
        return real(path, size, resize)

    decode_module.read_image = in_lockstep
    decoded = decode_split_cached(split, ["a"], SIZE, Path(cache), threads=1)
    results.put((np.asarray(decoded.images), decoded.skipped, len(read)))


def test_concurrent_builders_leave_one_valid_entry(tmp_path: Path) -> None:
    split = make_split(tmp_path / "data")
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_build_in_child, args=(split, str(tmp_path / "cache"), barrier, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    expected = fresh(split, ["a"])
    for images, skipped, read in got:
        assert read == 7  # both built the entry: one of them lost the race to publish it
        assert np.array_equal(images, expected.images) and skipped == expected.skipped
    assert [p.name for p in (tmp_path / "cache" / "decoded").iterdir()] == [entries(tmp_path / "cache")[0].name]
    assert_same(cached(split, ["a"], tmp_path / "cache"), expected)


@pytest.mark.parametrize("damage", ["truncated images", "no meta", "garbled meta", "wrong shape"])
def test_damaged_entry_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    split = make_split(tmp_path / "data")
    cached(split, ["b"], tmp_path / "cache")
    (entry,) = entries(tmp_path / "cache")
    if damage == "truncated images":
        os.truncate(entry / "images.u8", (entry / "images.u8").stat().st_size - 1)
    elif damage == "no meta":
        (entry / "meta.json").unlink()
    elif damage == "garbled meta":
        (entry / "meta.json").write_text('{"format": 1, "shape": [6, 16')
    else:
        meta = json.loads((entry / "meta.json").read_text())
        (entry / "meta.json").write_text(json.dumps({**meta, "shape": [5, SIZE, SIZE, 3]}))
    read = count_reads(monkeypatch)
    rebuilt = cached(split, ["b"], tmp_path / "cache")
    assert len(read) == 6
    cached(split, ["b"], tmp_path / "cache")
    assert len(read) == 6  # the rebuilt entry is valid
    monkeypatch.undo()
    assert_same(rebuilt, fresh(split, ["b"]))
    assert [p.name for p in (tmp_path / "cache" / "decoded").iterdir()] == [entry.name]  # no temp or trash left


def test_class_with_only_broken_files_is_an_error_and_not_cached(tmp_path: Path) -> None:
    split = make_split(tmp_path / "data")
    for path in split.paths:
        if path.parent.name == "b":
            path.write_bytes(b"")
    with pytest.raises(DataError, match=r"no image of class 'b' could be read \(first: .*b/00.png: empty file\)"):
        decode_split_cached(split, ["b"], SIZE, tmp_path / "cache")
    assert not any((tmp_path / "cache" / "decoded").iterdir())


def test_unwritable_cache_dir_is_a_one_line_error(tmp_path: Path) -> None:
    split = make_split(tmp_path / "data")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(DataError) as info:
        decode_split_cached(split, ["b"], SIZE, blocker)
    message = str(info.value)
    assert message.startswith(f"cannot write the decode cache in {blocker / 'decoded'}: ") and "\n" not in message
    assert message.endswith("; pass --cache-dir somewhere writable or --no-decode-cache")


def test_in_memory_splits_bypass_the_cache(tmp_path: Path) -> None:
    images = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    split = ImageSplit(classes=("x", "y"), labels=np.array([0, 1, 0, 1, 1]), images=images)
    got = decode_split_cached(split, ["x", "y"], 8, tmp_path / "cache")
    assert np.array_equal(got.images, images) and not (tmp_path / "cache").exists()


def test_image_stack_indexing_and_pickling(tmp_path: Path) -> None:
    split = make_split(tmp_path / "data")
    stack = cached(split, ["a", "b"], tmp_path / "cache").images
    whole = np.asarray(stack)
    assert whole.shape == (12, SIZE, SIZE, 3) and whole.dtype == np.uint8 and len(stack) == 12
    picks = np.array([11, 0, 3, 3, 7])
    assert np.array_equal(stack[picks], whole[picks]) and np.array_equal(stack[2:9:3], whole[2:9:3])
    assert np.array_equal(stack[-1], whole[-1]) and not stack[0].flags.writeable
    copy = pickle.loads(pickle.dumps(stack))
    assert all(isinstance(part, np.memmap) for part in copy.parts)
    assert [part.filename for part in copy.parts] == [part.filename for part in stack.parts]
    assert np.array_equal(np.asarray(copy), whole)


# ---------------------------------------------------------------- bench run

runner = CliRunner()
TINY = ["--epochs", "1", "--img-size", "16", "--seeds", "1", "--batch-size", "8", "--ratios", "0.5", "--methods", "ce"]


def write_folder(root: Path) -> None:
    """train/ and test/ with two classes of 8 and 3 small PNGs."""
    rng = np.random.default_rng(2)
    for split, count in (("train", 8), ("test", 3)):
        for name, colour in (("elk", (150, 110, 60)), ("moose", (90, 80, 70))):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.array(colour) + rng.integers(0, 60, size=(18, 22, 3))
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{i}.png")


def test_bench_run_reuses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_folder(tmp_path / "deer")
    cache = tmp_path / "cache"
    read = count_reads(monkeypatch)

    def run(name: str, *extra: str) -> dict:
        args = ["run", "--data", str(tmp_path / "deer"), "--classes", "elk", "moose", *TINY, "--cache-dir", str(cache)]
        result = runner.invoke(cli.app, [*args, *extra, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        return json.loads((tmp_path / name / "elk-vs-moose__resnet18__ce__r0.5__s0" / "result.json").read_text())

    first = run("first")
    assert len(read) == 22 and len(entries(cache)) == 4  # 2 classes x (train, test)
    listing = {p: p.stat().st_mtime_ns for p in (cache / "decoded").rglob("*") if p.name != "meta.json"}
    second = run("second")
    assert len(read) == 22  # nothing decoded
    uncached = run("uncached", "--no-decode-cache")
    assert len(read) == 44
    # nothing rewritten (meta.json's time is the entry's last use, refreshed by every read)
    assert {p: p.stat().st_mtime_ns for p in (cache / "decoded").rglob("*") if p.name != "meta.json"} == listing
    assert len(list((cache / "decoded").rglob("meta.json"))) == 4
    assert first["metrics"] == second["metrics"] == uncached["metrics"]  # same pixels, same numbers
    assert first["config"] == uncached["config"]  # the flag is not part of the run's identity
