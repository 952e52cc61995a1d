"""``--resize stretch|pad|center-crop``: how a non-square image becomes a square, by hand on small synthetic images;
the decode cache keyed on the mode; the mode wired from ``bench run`` to the decoded pixels and the run's record."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from bench import cli, ray_executor, remote_run
from bench.config import TrainSettings, resolve_options
from bench.data import decode as decode_module
from bench.data import decode_split, decode_split_cached, open_source, resize_square
from bench.data.cache import CACHE_FORMAT, META, entry_key
from bench.data.cache_admin import render_listing, scan
from bench.data.splits import ImageSplit
from bench.task import prepare_task

runner = CliRunner()
LEFT, RIGHT = (200, 10, 30), (10, 100, 251)
TINY = ["--epochs", "1", "--img-size", "16", "--seeds", "1", "--batch-size", "8", "--ratios", "1", "--methods", "ce",
        "--backbone", "test_resnet"]  # fmt: skip


def halves(height: int = 20, width: int = 40) -> np.ndarray:
    """uint8 [height, width, 3]: the left half LEFT, the right half RIGHT."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:, : width // 2], image[:, width // 2 :] = LEFT, RIGHT
    return image


def test_pad_keeps_the_aspect_ratio_centred_on_the_mean_colour() -> None:
    image = halves()  # 40 wide, 20 high: the longer side 40 -> 16, the shorter 20 -> 8
    out = resize_square(image, 16, "pad")
    mean = np.rint(image.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert mean.tolist() == [105, 55, 140]  # (200 + 10) / 2, (10 + 100) / 2, (30 + 251) / 2 = 140.5 rounded to even
    assert (out[:4] == mean).all() and (out[12:] == mean).all()  # a band of 4 rows above and below
    assert (out[4:12, :8] == LEFT).all() and (out[4:12, 8:] == RIGHT).all()  # 8 rows of content, halves kept


def test_pad_of_a_tall_image_puts_the_bands_left_and_right() -> None:
    image = np.ascontiguousarray(halves().transpose(1, 0, 2))  # 20 wide, 40 high: top half LEFT, bottom RIGHT
    out = resize_square(image, 16, "pad")
    mean = np.rint(image.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
    assert (out[:, :4] == mean).all() and (out[:, 12:] == mean).all()
    assert (out[:8, 4:12] == LEFT).all() and (out[8:, 4:12] == RIGHT).all()


def test_center_crop_keeps_the_centre_square() -> None:
    image = np.empty((20, 40, 3), dtype=np.uint8)
    image[:, :10], image[:, 10:30], image[:, 30:] = LEFT, (90, 90, 90), RIGHT  # the centre 20 x 20 is grey
    out = resize_square(image, 10, "center-crop")
    assert out.shape == (10, 10, 3) and (out == 90).all()
    tall = resize_square(np.ascontiguousarray(image.transpose(1, 0, 2)), 10, "center-crop")
    assert tall.shape == (10, 10, 3) and (tall == 90).all()


@pytest.mark.parametrize(("size", "interpolation"), [(16, cv2.INTER_AREA), (32, cv2.INTER_LINEAR)])
def test_stretch_is_cv2_resize_as_before(size: int, interpolation: int) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    expected = cv2.resize(image, (size, size), interpolation=interpolation)
    assert np.array_equal(resize_square(image, size), expected)
    assert np.array_equal(resize_square(image, size, "stretch"), expected)


@pytest.mark.parametrize("mode", ["pad", "center-crop"])
def test_square_images_are_the_same_in_every_mode(mode: str) -> None:
    """The built-in data sets are square (digits 8x8, CIFAR-10 32x32): the mode changes none of their pixels."""
    image = np.random.default_rng(1).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    assert np.array_equal(resize_square(image, 32, mode), resize_square(image, 32, "stretch"))
    digits = open_source("digits").train
    assert digits.images is not None and digits.images.shape[1] == digits.images.shape[2]
    stretched = decode_split(digits, ["1", "8"], 16)
    assert np.array_equal(decode_split(digits, ["1", "8"], 16, resize=mode).images, stretched.images)


def test_a_split_in_memory_is_made_square_in_the_mode_asked() -> None:
    split = ImageSplit(classes=("a", "b"), labels=np.array([0, 1]), images=np.stack([halves(), halves()[:, ::-1]]))
    expected = np.stack([resize_square(image, 16, "pad") for image in split.images])
    assert np.array_equal(decode_split(split, ["a", "b"], 16, resize="pad").images, expected)
    assert np.array_equal(decode_split_cached(split, ["a", "b"], 16, Path("unused"), resize="pad").images, expected)


def test_an_unknown_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown resize mode 'squash'"):
        resize_square(halves(), 16, "squash")


def _write_folder(root: Path) -> None:
    """Classes a and b, 4 train and 2 test images each, 40 x 20 with distinct left and right halves."""
    for split, count in (("train", 4), ("test", 2)):
        for name, shift in (("a", 0), ("b", 40)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray((halves() // 2 + shift + i).astype(np.uint8)).save(folder / f"{i}.png")


def test_the_cache_key_differs_by_mode_and_stretch_keeps_the_old_key(tmp_path: Path) -> None:
    (path := tmp_path / "x.png").write_bytes(b"")
    stat = os.stat(path)
    old = hashlib.sha256(f"bench decoded images v{CACHE_FORMAT}\0{16}\n".encode())  # the key before --resize
    old.update(os.fsencode(str(path)) + f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    keys = {mode: entry_key([str(path)], 16, mode) for mode in ("stretch", "pad", "center-crop")}
    assert keys["stretch"] == entry_key([str(path)], 16) == old.hexdigest()
    assert len(set(keys.values())) == 3


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The resize mode of every image file decoded."""
    reads: list[str] = []
    real = decode_module.read_image

    def counting(path: Path, size: int, resize: str = "stretch") -> np.ndarray:
        reads.append(resize)
        return real(path, size, resize)

    monkeypatch.setattr(decode_module, "read_image", counting)
    return reads


def test_a_pad_decode_after_a_stretch_one_decodes_again(tmp_path: Path, count_reads: list[str]) -> None:
    _write_folder(tmp_path / "data")
    split, cache = open_source(str(tmp_path / "data")).train, tmp_path / "cache"
    stretched = decode_split_cached(split, ["a", "b"], 16, cache)
    assert count_reads == ["stretch"] * 8
    padded = decode_split_cached(split, ["a", "b"], 16, cache, resize="pad")
    assert count_reads == ["stretch"] * 8 + ["pad"] * 8  # the stretch entries are not served to pad
    assert not np.array_equal(padded.images[0], stretched.images[0])
    for mode, expected in (("stretch", stretched), ("pad", padded)):  # each mode now reads its own entries
        again = decode_split_cached(split, ["a", "b"], 16, cache, resize=mode)
        assert np.array_equal(again.images[3], expected.images[3])
    assert len(count_reads) == 16
    metas = [json.loads(p.read_text()) for p in (cache / "decoded").glob(f"*/{META}")]
    assert sorted(m["resize"] for m in metas) == ["pad", "pad", "stretch", "stretch"]
    entries = scan(cache)[0]  # bench cache tells the two apart
    assert [(e.name, e.resize) for e in entries] == [("a", "pad"), ("a", "stretch"), ("b", "pad"), ("b", "stretch")]
    listing = render_listing(cache, entries, [], 0.0)
    assert listing[1] == "| split folder | class | img px | resize | images | MiB | last used |"
    assert listing[3].split(" | ")[1:5] == ["a", "16", "pad", "4"]
    assert np.array_equal(padded.images[0], decode_split(split, ["a", "b"], 16, resize="pad").images[0])


def test_a_stretch_entry_written_before_the_mode_existed_is_still_read(tmp_path: Path, count_reads: list[str]) -> None:
    _write_folder(tmp_path / "data")
    split, cache = open_source(str(tmp_path / "data")).train, tmp_path / "cache"
    decode_split_cached(split, ["a"], 16, cache)
    (meta_path,) = (cache / "decoded").glob(f"*/{META}")
    meta = json.loads(meta_path.read_text())
    del meta["resize"]
    meta_path.write_text(json.dumps(meta))
    decode_split_cached(split, ["a"], 16, cache)
    assert count_reads == ["stretch"] * 4
    assert [e.resize for e in scan(cache)[0]] == ["stretch"]
    meta["resize"] = "pad"  # an entry that says it holds another mode is not served (as if it were damaged)
    meta_path.write_text(json.dumps(meta))
    decode_split_cached(split, ["a"], 16, cache)
    assert count_reads == ["stretch"] * 8


def test_a_task_without_the_decode_cache_has_the_cached_pixels(tmp_path: Path) -> None:
    _write_folder(tmp_path / "data")
    source = open_source(str(tmp_path / "data"))
    cached = prepare_task(source, ("a", "b"), 16, resize="pad", cache_dir=tmp_path / "cache")
    in_memory = prepare_task(source, ("a", "b"), 16, resize="pad")
    stretched = prepare_task(source, ("a", "b"), 16)
    assert np.array_equal(in_memory.train_images, np.stack([cached.train_images[i] for i in range(8)]))
    assert not np.array_equal(in_memory.train_images, stretched.train_images)


def test_bench_run_with_resize_pad_records_it_and_is_not_taken_for_a_stretch_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_folder(tmp_path / "data")
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    args = ["run", "--data", str(tmp_path / "data"), "--classes", "a", "b", *TINY]
    stretched = runner.invoke(cli.app, [*args, "--out", str(tmp_path / "stretch")])
    assert stretched.exit_code == 0, stretched.output
    reused = runner.invoke(cli.app, [*args, "--resize", "pad", "--out", str(tmp_path / "stretch")])
    assert reused.exit_code == 2
    assert "different settings (resize: 'stretch' there, 'pad' now)" in reused.output
    padded = runner.invoke(cli.app, [*args, "--resize", "pad", "--out", str(tmp_path / "pad")])
    assert padded.exit_code == 0, padded.output
    (result,) = (tmp_path / "pad").glob("*/result.json")
    assert json.loads(result.read_text())["config"]["resize"] == "pad"
    (stretch_result,) = (tmp_path / "stretch").glob("*/result.json")
    assert json.loads(stretch_result.read_text())["config"]["resize"] == "stretch"
    metas = [json.loads(p.read_text()) for p in (tmp_path / "cache" / "decoded").glob(f"*/{META}")]
    assert sorted(m["resize"] for m in metas) == ["pad"] * 4 + ["stretch"] * 4  # 2 classes x 2 splits each


def test_ray_workers_and_driver_decode_in_the_run_s_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The body of a Ray task and the driver's cache filling (no Ray needed) pass --resize on."""
    _write_folder(tmp_path / "data")
    source = open_source(str(tmp_path / "data"))
    settings = TrainSettings.from_options(resolve_options({"resize": "center-crop"}))
    calls: list[str] = []
    real = remote_run.prepare_task
    monkeypatch.setattr(remote_run, "_TASKS", {})
    monkeypatch.setattr(remote_run, "prepare_task", lambda *a, **k: calls.append(k["resize"]) or real(*a, **k))
    stretched = remote_run.cached_task(source, ("a", "b"), 16, None)
    cropped = remote_run.cached_task(source, ("a", "b"), 16, None, "center-crop")
    assert calls == ["stretch", "center-crop"] and cropped is not stretched  # one task per mode
    assert remote_run.cached_task(source, ("a", "b"), 16, None, "center-crop") is cropped

    class Stop(Exception):
        pass

    def stop(*args: object) -> None:
        calls.append(str(args[4]))
        raise Stop

    config = SimpleNamespace(run_id="r", classes=("a", "b"), settings=settings)
    monkeypatch.setattr(remote_run, "cached_task", stop)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(Stop):
            remote_run.train_remote(config, source, remote_run.WorkerOptions("cpu", False, 0, 1.0, None))  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(threads)
    assert calls[-1] == "center-crop"

    monkeypatch.setattr(ray_executor, "prepare_task", lambda *a, **k: calls.append(k["resize"]) or real(*a, **k))
    spec, pending = SimpleNamespace(settings=settings), [SimpleNamespace(classes=("a", "b"))]
    ray_executor._prepare_on_driver(spec, source, pending, tmp_path / "cache", SimpleNamespace(preparing=None))  # type: ignore[arg-type]
    assert calls[-1] == "center-crop"
