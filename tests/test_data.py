"""Tests of bench.data: sources, decoding, the subsampling protocol, augmentation and loaders (CPU, offline)."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.config import ConfigError
from bench.data import (
    ArrayDataset,
    DataError,
    ImageSplit,
    compute_channel_stats,
    create_loader,
    create_randaugment,
    create_test_transform,
    create_train_transform,
    decode_split,
    epoch_seed,
    load_task_file,
    open_source,
    resolve_workers,
    seed_transform,
    set_loader_epoch,
    subsample_task,
)
from bench.data import cifar as cifar_module

# ---------------------------------------------------------------- helpers


def write_image(path: Path, color: tuple[int, int, int] = (200, 30, 60), size: tuple[int, int] = (12, 10)) -> Path:
    """A small solid RGB image; the format follows the file extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def make_tree(root: Path, splits: dict[str, dict[str, int]], ext: str = ".png") -> Path:
    """root/<split>/<class>/NNN<ext> with the given number of images per class."""
    for split, classes in splits.items():
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                write_image(root / split / name / f"{i:03d}{ext}", color=(i * 10 % 256, 50, 90))
    return root


def jpeg_bytes(size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def file_split(paths: list[Path], labels: list[int], classes: tuple[str, ...]) -> ImageSplit:
    return ImageSplit(classes=classes, labels=np.asarray(labels, dtype=np.int64), paths=tuple(paths))


# ---------------------------------------------------------------- digits


def test_digits_source() -> None:
    source = open_source(None)
    assert source.name == "digits" and source.test_split == "test"
    assert source.train.classes == tuple(str(d) for d in range(10))
    assert source.train.images.shape == (1347, 8, 8, 3) and source.train.images.dtype == np.uint8
    assert source.test.images.shape == (450, 8, 8, 3)
    assert source.train.labels.dtype == np.int64 and len(source.train.labels) == 1347
    assert source.train.paths is None
    assert source.train.images.max() == 255 and source.train.images.min() == 0
    assert np.array_equal(source.train.images[..., 0], source.train.images[..., 2])  # grey stacked to RGB
    assert source.tasks == {"fine": ("1", "8"), "coarse": ("0", "1")}
    assert source.defaults == {"img_size": 32, "epochs": 10, "majority_count": 10000, "seeds": 2}
    assert np.bincount(source.test.labels).min() >= 43  # stratified
    ones = source.train.indices_of("1")
    assert ones.dtype == np.int64 and np.all(np.diff(ones) > 0) and np.all(source.train.labels[ones] == 1)
    again = open_source("digits")
    assert again.fingerprint == source.fingerprint
    assert np.array_equal(again.train.images, source.train.images)
    with pytest.raises(DataError, match="unknown class"):
        source.train.indices_of("eleven")


# ---------------------------------------------------------------- ImageFolder


def test_folder_labels_sorted_by_name_and_files_sorted(tmp_path: Path) -> None:
    names = ["zebra", "Apple", "mango"]
    root = make_tree(tmp_path / "data", {"train": dict.fromkeys(names, 2), "test": dict.fromkeys(names, 1)})
    write_image(root / "train" / "mango" / "sub" / "000.JPG")  # nested files and upper-case extensions count
    (root / "train" / "mango" / ".hidden.png").write_bytes(b"x")
    (root / "train" / "mango" / "notes.txt").write_text("not an image")
    (root / "train" / ".cache").mkdir()
    source = open_source(root)
    assert source.name == str(root) and source.test_split == "test" and source.defaults == {}
    assert source.train.classes == ("Apple", "mango", "zebra")
    assert source.test.classes == source.train.classes
    mango = source.train.indices_of("mango")
    assert [source.train.paths[i].relative_to(root / "train" / "mango").as_posix() for i in mango] == [
        "000.png",
        "001.png",
        "sub/000.JPG",
    ]
    assert source.train.labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert source.tasks == {}
    assert len(source.fingerprint) >= 8 and open_source(root).fingerprint == source.fingerprint
    copy = tmp_path / "copied"  # a copy with new modification times (another node, a re-extraction) is the same data
    shutil.copytree(root, copy, copy_function=shutil.copyfile)
    os.utime(copy / "train" / "mango" / "000.png", ns=(1, 1))
    assert open_source(copy).fingerprint == source.fingerprint
    write_image(root / "test" / "zebra" / "new.png")
    assert open_source(root).fingerprint != source.fingerprint
    (copy / "train" / "zebra" / "000.png").write_bytes((copy / "train" / "zebra" / "000.png").read_bytes() + b"\0")
    assert open_source(copy).fingerprint != source.fingerprint  # a file whose bytes changed size


@pytest.mark.parametrize("present, used", [(["val"], "val"), (["valid"], "valid"), (["valid", "val"], "val")])
def test_folder_eval_split_names(tmp_path: Path, present: list[str], used: str) -> None:
    splits = {"train": {"a": 1, "b": 1}} | {name: {"a": 1, "b": 1} for name in present}
    source = open_source(make_tree(tmp_path, splits))
    assert source.test_split == used
    assert all(p.parts[-3] == used for p in source.test.paths)


def test_folder_reads_bench_toml_tasks(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path, {"train": {"deer": 2, "horse": 1, "frog": 1}, "test": {"deer": 1, "horse": 1, "frog": 1}}
    )
    (root / "bench.toml").write_text(
        '# tasks\n[tasks.fine]\nclasses = ["deer", "horse"]\n\n[tasks.coarse]\nclasses = ["deer", "frog"]\n'
    )
    assert open_source(root).tasks == {"fine": ("deer", "horse"), "coarse": ("deer", "frog")}
    (root / "bench.toml").write_text('[tasks.bad]\nclasses = ["deer", "elk"]\n')
    with pytest.raises(DataError, match="elk"):
        open_source(root)


@pytest.mark.parametrize(
    "text, match",
    [
        ("[tasks.x\nclasses = 1", "fix the TOML syntax"),
        ('[tasks.x]\nclasses = ["a"]', "two class names"),
        ("[tasks.x]\nmajority = 'a'", "unknown key 'majority'"),
        ('[tasks.x]\nclasses = ["a", "a"]', "twice"),
        ('tasks = "fine"', "table"),
        ("[train]\nepochs = 3\n", "unknown key 'train'"),
        ("epoch = 3\n", "did you mean 'epochs'"),
        ('data = "elsewhere"\n', "points away from the data set"),
    ],
)
def test_a_data_root_file_follows_the_config_file_rules(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bench.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_task_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_data_root_file_takes_long_tailed_tasks_and_options(tmp_path: Path) -> None:
    path = tmp_path / "bench.toml"
    path.write_text(
        'epochs = 3\ndata = "."\n[tasks.lt]\nclasses = ["x", "y", "z"]\n[tasks.pair]\nclasses = ["x", "y"]\n'
    )
    assert load_task_file(path) == {"lt": ("x", "y", "z"), "pair": ("x", "y")}
    path.write_text("epochs = 3\n")
    assert load_task_file(path) == {}
    with pytest.raises(ConfigError, match="does not exist"):
        load_task_file(tmp_path / "absent.toml")


def _broken_layouts(root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (data path, expected message fragment) for every ImageFolder DataError."""
    cases = {}
    cases["missing"] = (root / "nowhere", "does not exist")
    file = root / "file.txt"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("x")
    cases["not_dir"] = (file, "not a directory")
    no_train = make_tree(root / "no_train", {"test": {"a": 1}})
    cases["no_train"] = (no_train, "train/<class>")
    no_test = make_tree(root / "no_test", {"train": {"a": 1}})
    cases["no_test"] = (no_test, "val/ or valid/")
    no_classes = make_tree(root / "no_classes", {"test": {"a": 1}})
    (no_classes / "train").mkdir()
    write_image(no_classes / "train" / "loose.png")
    cases["no_classes"] = (no_classes, "no class folders")
    return cases  # an empty class folder, or one only one split has, is left out (test_folder_data.py)


@pytest.mark.parametrize("case", ["missing", "not_dir", "no_train", "no_test", "no_classes"])
def test_folder_errors_are_one_line(tmp_path: Path, case: str) -> None:
    path, match = _broken_layouts(tmp_path)[case]
    with pytest.raises(DataError, match=match) as info:
        open_source(path)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- CIFAR-10 format


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(cache: Path, per_batch: int = 4) -> dict[str, np.ndarray]:
    """A tiny cifar-10-batches-py in `cache`; returns the images [N, 32, 32, 3] written per file."""
    folder = cache / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        data = images.transpose(0, 3, 1, 2).reshape(per_batch, 3072)  # R plane, G plane, B plane
        labels = [(i + j) % 10 for j in range(per_batch)]
        with (folder / name).open("wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, f)
        written[name] = images
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}, f)
    return written


def _no_network(cache_dir: Path) -> None:
    raise OSError("network is disabled in tests")


def test_cifar10_reads_batches_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cifar_module, "_download_cifar10", _no_network)
    written = write_cifar(tmp_path)
    source = open_source("cifar10", cache_dir=tmp_path)
    assert source.name == "cifar10" and source.test_split == "test"
    assert source.train.classes == tuple(CIFAR_NAMES)
    assert source.train.images.shape == (20, 32, 32, 3) and source.test.images.shape == (4, 32, 32, 3)
    assert np.array_equal(source.train.images[:4], written["data_batch_1"])
    assert np.array_equal(source.train.images[16:], written["data_batch_5"])
    assert np.array_equal(source.test.images, written["test_batch"])
    assert source.train.labels[:4].tolist() == [0, 1, 2, 3] and source.test.labels.tolist() == [5, 6, 7, 8]
    assert source.tasks == {"fine": ("deer", "horse"), "coarse": ("deer", "frog")}
    assert source.defaults["img_size"] == 32


def test_cifar10_uses_bench_cache_and_reports_failed_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cifar_module, "_download_cifar10", _no_network)
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="could not download CIFAR-10") as info:
        open_source("cifar10")
    assert "\n" not in str(info.value) and str(tmp_path / "cache") in str(info.value)
    write_cifar(tmp_path / "cache", per_batch=2)
    assert len(open_source("cifar10").train.labels) == 10


def test_cifar10_damaged_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cifar_module, "_download_cifar10", _no_network)
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        open_source("cifar10", cache_dir=tmp_path)


# ---------------------------------------------------------------- decoding


def test_decode_converts_modes_to_rgb(tmp_path: Path) -> None:
    files = []
    rgba = np.zeros((10, 14, 4), dtype=np.uint8)
    rgba[...] = (10, 20, 30, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.new("P", (9, 9), 3).save(tmp_path / "palette.png")
    transparent = Image.new("P", (9, 9), 1)
    transparent.info["transparency"] = 0
    transparent.save(tmp_path / "transparent.gif")
    Image.new("L", (20, 7), 100).save(tmp_path / "grey.png")
    Image.fromarray(np.full((6, 6), 257 * 100, dtype=np.uint16)).save(tmp_path / "deep.png")
    Image.new("CMYK", (16, 16), (0, 0, 0, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("RGB", (5, 5), (1, 2, 3)).save(tmp_path / "tiny.bmp")
    Image.new("LA", (8, 8), (50, 128)).save(tmp_path / "la.png")
    for name in [
        "rgba.png",
        "palette.png",
        "transparent.gif",
        "grey.png",
        "deep.png",
        "cmyk.jpg",
        "tiny.bmp",
        "la.png",
    ]:
        files.append(tmp_path / name)
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    split = file_split(files, [0] * len(files), ("x",))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded = decode_split(split, ["x"], 12, threads=2)
    assert decoded.images.shape == (len(files), 12, 12, 3) and decoded.images.dtype == np.uint8
    assert decoded.skipped == ()
    assert decoded.source_indices.tolist() == list(range(len(files)))
    assert tuple(decoded.images[0, 5, 5]) == (10, 20, 30)
    assert tuple(decoded.images[3, 5, 5]) == (100, 100, 100)
    assert tuple(decoded.images[4, 5, 5]) == (100, 100, 100)  # 16-bit scaled, not clipped to white
    assert np.all(decoded.images[5] > 240)  # CMYK (0, 0, 0, 0) is white
    assert tuple(decoded.images[6, 5, 5]) == (1, 2, 3)


def test_decode_applies_exif_orientation(tmp_path: Path) -> None:
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[:, :10] = (255, 0, 0)
    pixels[:, 10:] = (0, 0, 255)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    image.save(tmp_path / "sideways.jpg", exif=exif.tobytes(), quality=95)
    decoded = decode_split(file_split([tmp_path / "sideways.jpg"], [0], ("x",)), ["x"], 8)
    top, bottom = decoded.images[0, 0, 4], decoded.images[0, 7, 4]
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_decode_skips_unreadable_files(tmp_path: Path) -> None:
    good = [write_image(tmp_path / f"good{i}.png") for i in range(2)]
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("this is not a JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg_bytes()[:300])
    other = write_image(tmp_path / "other.png")
    paths = [good[0], empty, text, other, truncated, good[1]]
    split = file_split(paths, [0, 0, 0, 1, 0, 0], ("a", "b"))
    calls: list[tuple[int, int]] = []
    with pytest.warns(UserWarning, match="skipped 3 of 5") as record:
        decoded = decode_split(split, ["a"], 16, progress=lambda done, total: calls.append((done, total)))
    assert len(record) == 1
    assert decoded.source_indices.tolist() == [0, 5] and decoded.labels.tolist() == [0, 0]
    assert decoded.images.shape == (2, 16, 16, 3)
    assert [s.split(": ")[0] for s in decoded.skipped] == [str(empty), str(text), str(truncated)]
    assert "empty file" in decoded.skipped[0] and "not a recognised image" in decoded.skipped[1]
    assert calls[-1] == (5, 5)


def test_decode_very_large_images(tmp_path: Path) -> None:
    """A 24-megapixel camera JPEG is decoded (at a reduced DCT scale); an image beyond Pillow's decompression-bomb
    limit is skipped with that reason instead of exhausting memory."""
    Image.new("RGB", (6000, 4000), (30, 160, 90)).save(tmp_path / "camera.jpg", quality=90)
    Image.new("1", (20_000, 10_000)).save(tmp_path / "bomb.png")  # 200 megapixels in a few kB of PNG
    assert 20_000 * 10_000 > 2 * Image.MAX_IMAGE_PIXELS  # past Pillow's limit, where it refuses to decode
    paths = [tmp_path / "camera.jpg", tmp_path / "bomb.png"]
    with pytest.warns(UserWarning, match="skipped 1 of 2"):
        decoded = decode_split(file_split(paths, [0, 0], ("x",)), ["x"], 16)
    assert decoded.source_indices.tolist() == [0]
    assert np.abs(decoded.images[0, 8, 8].astype(int) - (30, 160, 90)).max() <= 3
    assert decoded.skipped[0].startswith(f"{paths[1]}: DecompressionBombError")


def test_decode_class_with_only_broken_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG nonsense")
    split = file_split([write_image(tmp_path / "ok.png"), broken], [0, 1], ("cats", "dogs"))
    with pytest.raises(DataError, match="class 'dogs'.*broken.png"):
        decode_split(split, ["cats", "dogs"], 8)
    with pytest.raises(DataError, match="unknown class"):
        decode_split(split, ["cows"], 8)


def test_decode_in_memory_and_folder_order(tmp_path: Path) -> None:
    source = open_source("digits")
    decoded = decode_split(source.test, ["8", "1"], 20, threads=1)
    expected = np.flatnonzero(np.isin(source.test.labels, [1, 8]))
    assert decoded.images.shape == (len(expected), 20, 20, 3)
    assert np.array_equal(decoded.source_indices, expected)
    assert set(decoded.labels.tolist()) == {1, 8}
    root = make_tree(tmp_path, {"train": {"b": 3, "a": 2}, "test": {"a": 1, "b": 1}}, ext=".jpg")
    folder = open_source(root)
    one = decode_split(folder.train, ["a", "b"], 8, threads=1)
    two = decode_split(folder.train, ["a", "b"], 8, threads=2)
    assert np.array_equal(one.images, two.images) and one.labels.tolist() == [0, 0, 1, 1, 1]


# ---------------------------------------------------------------- subsampling


def imbalanced_labels() -> np.ndarray:
    labels = np.array([0] * 300 + [1] * 40 + [2] * 7, dtype=np.int64)
    return np.random.default_rng(3).permutation(labels)


def test_subsample_counts() -> None:
    labels = imbalanced_labels()
    full = subsample_task(labels, 0, 1, majority_count=250, ratio=0.1, seed=0)
    assert (full.majority_count, full.minority_count) == (250, 25)
    assert len(full.indices) == 275 and full.indices.dtype == np.int64
    assert np.all(labels[full.indices[:250]] == 0) and np.all(labels[full.indices[250:]] == 1)
    assert np.all(np.diff(full.indices[:250]) > 0) and np.all(np.diff(full.indices[250:]) > 0)
    assert subsample_task(labels, 0, 1, majority_count=1000, ratio=0.1, seed=0).majority_count == 300  # capped
    assert subsample_task(labels, 0, 1, majority_count=250, ratio=0.01, seed=0).minority_count == 3  # 2.5 rounds up
    assert subsample_task(labels, 0, 1, majority_count=30, ratio=0.01, seed=0).minority_count == 1  # at least 1
    assert subsample_task(labels, 0, 2, majority_count=300, ratio=1.0, seed=0).minority_count == 7  # capped


def test_subsample_nested_and_seeded() -> None:
    labels = imbalanced_labels()
    subsets = {r: subsample_task(labels, 0, 1, majority_count=200, ratio=r, seed=5) for r in (1.0, 0.1, 0.01)}
    for larger, smaller in [(1.0, 0.1), (0.1, 0.01)]:
        assert set(subsets[smaller].indices.tolist()) <= set(subsets[larger].indices.tolist())
    assert np.array_equal(subsets[1.0].indices[:200], subsets[0.01].indices[:200])
    again = subsample_task(labels, 0, 1, majority_count=200, ratio=0.1, seed=5)
    assert np.array_equal(again.indices, subsets[0.1].indices)
    other = subsample_task(labels, 0, 1, majority_count=200, ratio=0.1, seed=6)
    assert not np.array_equal(other.indices, subsets[0.1].indices)


@pytest.mark.parametrize("ratio", [0, 0.0, 1.5, -0.1, float("nan")])
def test_subsample_rejects_bad_ratio(ratio: float) -> None:
    with pytest.raises(DataError, match="ratio"):
        subsample_task(imbalanced_labels(), 0, 1, majority_count=10, ratio=ratio, seed=0)


def test_subsample_rejects_bad_classes() -> None:
    with pytest.raises(DataError):
        subsample_task(imbalanced_labels(), 0, 0, majority_count=10, ratio=0.5, seed=0)
    with pytest.raises(DataError, match="no images"):
        subsample_task(imbalanced_labels(), 0, 9, majority_count=10, ratio=0.5, seed=0)


# ---------------------------------------------------------------- augmentation


def random_images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def test_train_transform_output() -> None:
    transform = create_train_transform(MEAN, STD)
    out = transform(image=random_images(1, 24)[0])["image"]
    assert isinstance(out, torch.Tensor) and out.shape == (3, 24, 24) and out.dtype == torch.float32


@pytest.mark.parametrize("magnitude", [0, 9, 30])
def test_randaugment_every_op_runs(magnitude: int) -> None:
    augment = create_randaugment(num_ops=2, magnitude=magnitude)
    ops = augment.transforms
    assert len(ops) == 14
    image = random_images(1, 16)[0]
    for op in ops:
        out = op(image=image)["image"]
        assert out.shape == image.shape and out.dtype == np.uint8
    assert augment(image=image)["image"].shape == image.shape


def test_randaugment_rejects_bad_settings() -> None:
    with pytest.raises(DataError):
        create_randaugment(2, 31)
    with pytest.raises(DataError):
        create_randaugment(-1, 9)


def test_seeded_train_transform_repeats() -> None:
    images = random_images(6)
    runs = []
    for _ in range(2):
        transform = create_train_transform(MEAN, STD)
        seed_transform(transform, 123)
        runs.append(torch.stack([transform(image=im)["image"] for im in images]))
    assert torch.equal(runs[0], runs[1])


def test_test_transform_is_normalisation() -> None:
    image = random_images(1, 10)[0]
    transform = create_test_transform(MEAN, STD)
    first, second = transform(image=image)["image"], transform(image=image)["image"]
    assert torch.equal(first, second)
    expected = (image.astype(np.float64) / 255.0 - np.array(MEAN)) / np.array(STD)
    assert np.allclose(first.numpy(), expected.transpose(2, 0, 1), atol=1e-5)


def test_compute_channel_stats_matches_numpy() -> None:
    images = random_images(7, 5, seed=4)
    images[..., 2] //= 3
    mean, std = compute_channel_stats(images, chunk_pixels=40)  # several chunks
    scaled = images.astype(np.float64) / 255.0
    assert np.allclose(mean, scaled.mean(axis=(0, 1, 2)))
    assert np.allclose(std, scaled.std(axis=(0, 1, 2)))
    assert all(isinstance(v, float) for v in (*mean, *std))


def test_compute_channel_stats_over_indices_equals_the_copy() -> None:
    images = random_images(9, 6, seed=5)
    indices = np.array([7, 0, 3, 3, 8], dtype=np.int64)
    assert compute_channel_stats(images, indices, chunk_pixels=50) == compute_channel_stats(
        images[indices], chunk_pixels=50
    )  # the same chunks in the same order: bit-identical


# ---------------------------------------------------------------- loaders


@pytest.mark.parametrize("oversample", [False, True])
def test_loader_over_indices_equals_loader_over_the_copy(oversample: bool) -> None:
    images, labels = random_images(30, 8, seed=2), np.arange(30) % 3
    indices = np.array([29, 3, 4, 10, 11, 12, 20, 21, 2, 0], dtype=np.int64)

    def batches(**data: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
        transform = create_train_transform(MEAN, STD)
        loader = create_loader(transform=transform, batch_size=4, train=True, oversample=oversample, seed=3, **data)
        return list(loader)

    viewed = batches(images=images, labels=labels, indices=indices)
    copied = batches(images=images[indices], labels=labels[indices])
    assert len(viewed) == len(copied) == 3
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(viewed, copied, strict=True))
    with pytest.raises(DataError, match="indices must lie in 0..29"):
        ArrayDataset(images, labels, create_test_transform(MEAN, STD), np.array([30]))


def test_oversampling_balances_classes() -> None:
    labels = np.array([0] * 100 + [1] * 5, dtype=np.int64)
    loader = create_loader(
        random_images(105, 4), labels, create_test_transform(MEAN, STD), batch_size=35, train=True, oversample=True
    )
    seen = torch.cat([y for _ in range(4) for _, y in loader])
    assert len(seen) == 420
    assert 0.35 <= seen.float().mean().item() <= 0.65


def first_batch(loader: torch.utils.data.DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(loader))


def test_same_seed_same_first_batch() -> None:
    images, labels = random_images(40, 8), np.arange(40) % 4

    def make(seed: int) -> torch.utils.data.DataLoader:
        return create_loader(images, labels, create_train_transform(MEAN, STD), batch_size=8, train=True, seed=seed)

    (xa, ya), (xb, yb), (xc, _) = first_batch(make(1)), first_batch(make(1)), first_batch(make(2))
    assert xa.shape == (8, 3, 8, 8) and ya.dtype == torch.int64
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, xc)


def test_same_seed_same_first_batch_with_a_worker() -> None:
    images, labels = random_images(24, 8), np.arange(24) % 3
    batches = []
    for _ in range(2):
        transform = create_train_transform(MEAN, STD)
        loader = create_loader(images, labels, transform, batch_size=6, train=True, oversample=True, workers=1, seed=7)
        batches.append(first_batch(loader))
        del loader
    assert torch.equal(batches[0][0], batches[1][0]) and torch.equal(batches[0][1], batches[1][1])


def epochs_of(loader: torch.utils.data.DataLoader, count: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    return [list(loader) for _ in range(count)]


def same_batches(a: list[tuple[torch.Tensor, torch.Tensor]], b: list[tuple[torch.Tensor, torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=False)
    )


@pytest.mark.parametrize("sampling", ["shuffle", "oversample", "deferred"])
def test_an_epoch_depends_only_on_the_seed_and_its_number(sampling: str) -> None:
    """A loader told to start at epoch 3 (a resumed run) loads what the third pass of an uninterrupted one did."""
    images, labels = random_images(24, 8, seed=5), np.array([0] * 18 + [1] * 6)
    options = {"oversample": sampling != "shuffle", "oversample_from": 2 if sampling == "deferred" else None}

    def make() -> torch.utils.data.DataLoader:
        transform = create_train_transform(MEAN, STD)
        return create_loader(images, labels, transform, batch_size=8, train=True, seed=3, **options)

    straight = epochs_of(make(), 4)
    assert not same_batches(straight[0], straight[1]) and not same_batches(straight[2], straight[3])
    resumed = make()
    set_loader_epoch(resumed, 3)
    assert same_batches(list(resumed), straight[2]) and same_batches(list(resumed), straight[3])


def test_one_loader_worker_loads_what_the_main_process_does() -> None:
    """Augmentations are seeded per worker id, with the main process as worker 0: --workers 0 and 1 agree."""
    images, labels = random_images(20, 8, seed=6), np.arange(20) % 2

    def make(workers: int) -> torch.utils.data.DataLoader:
        transform = create_train_transform(MEAN, STD)
        return create_loader(images, labels, transform, batch_size=5, train=True, workers=workers, seed=9)

    in_process, one_worker = epochs_of(make(0), 2), epochs_of(make(1), 2)
    assert all(same_batches(a, b) for a, b in zip(in_process, one_worker, strict=True))
    assert not same_batches(in_process[0], in_process[1])


def test_epoch_seeds_differ_by_seed_epoch_and_stream() -> None:
    seeds = {epoch_seed(s, e, k) for s in range(3) for e in range(1, 4) for k in range(3)}
    assert len(seeds) == 27 and all(0 <= seed < 2**63 for seed in seeds)
    assert epoch_seed(1, 2, 3) == epoch_seed(1, 2, 3)


def test_eval_loader_keeps_order() -> None:
    images, labels = random_images(10, 4), np.arange(10) % 2
    loader = create_loader(images, labels, create_test_transform(MEAN, STD), batch_size=4, train=False)
    assert torch.cat([y for _, y in loader]).tolist() == labels.tolist()
    transform = create_test_transform(MEAN, STD)
    ignored = create_loader(images, labels, transform, batch_size=4, train=False, oversample=True)
    assert torch.cat([y for _, y in ignored]).tolist() == labels.tolist()  # eval never oversamples
    dataset = ArrayDataset(images, labels, create_test_transform(MEAN, STD))
    x, y = dataset[3]
    assert x.shape == (3, 4, 4) and y == 1


def test_resolve_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_workers(3) == 3 and resolve_workers(0) == 0
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert resolve_workers(None) == 0
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert resolve_workers(None) == 3
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    assert resolve_workers(None) == 8
    with pytest.raises(DataError):
        resolve_workers(-1)
