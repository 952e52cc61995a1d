"""The validation split: carved from each class's seeded order (disjoint from training at every ratio, the same for
every method and ratio of a seed), or a data set's own val/ beside test/; and what a run writes about it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench import cli
from bench.calibration import calibration_metrics
from bench.data import DataError, open_source, subsample_long_tail, subsample_task
from bench.data.digits import open_digits
from bench.data.subsample import trainable_counts, validation_counts
from bench.deployment import deployment_metrics
from bench.results import RUN_FILES, VAL_OUTPUTS_FILE, RunFolder
from bench.runner import create_subset, create_validation, subset_record
from bench.task import TaskData, check_val_classes, prepare_task

RATIOS = (1.0, 0.5, 0.1, 0.01)


def permutation(labels: np.ndarray, label: int, seed: int) -> np.ndarray:
    """The class's images in its seeded order, as the protocol draws it: int [n_label]."""
    members = np.flatnonzero(labels == label)
    return members[np.random.default_rng([seed, label]).permutation(len(members))]


# ---------------------------------------------------------------------------------------------- the counts


def test_validation_counts_by_hand() -> None:
    # v_c = min(val_count, n_c // 2): 5000 -> 100; 7 -> 7 // 2 = 3; 1 -> 0 (a class of one image keeps it to train)
    assert validation_counts([5000, 7, 1], 100) == (100, 3, 0)
    assert trainable_counts([5000, 7, 1], 100) == (4900, 4, 1)
    assert validation_counts([5000, 7, 1], 0) == (0, 0, 0) and trainable_counts([5000, 7], 0) == (5000, 7)


def test_cifar_sized_class_trains_on_what_validation_leaves() -> None:
    """CIFAR-10's 5,000 a class at --majority-count 5000 trains on 4,900 and validates on 100."""
    labels = np.repeat(np.arange(2), 5000)
    subset = subsample_task(labels, 0, 1, majority_count=5000, ratio=0.1, seed=0, val_count=100)
    assert subset.class_counts == (4900, 490) and subset.val_counts == (100, 100)  # 490 = round(0.1 * 4900)
    assert len(subset.val_indices) == 200 and not set(subset.val_indices) & set(subset.indices)


def test_validation_is_capped_at_half_a_class() -> None:
    # majority 10 images, minority 6: v = (min(100, 5), min(100, 3)) = (5, 3); the majority trains on 10 - 5 = 5,
    # the minority on min(round(1 * 5), 6 - 3) = 3
    labels = np.array([0] * 10 + [1] * 6)
    subset = subsample_task(labels, 0, 1, majority_count=1000, ratio=1.0, seed=2, val_count=100)
    assert subset.val_counts == (5, 3) and subset.class_counts == (5, 3)
    assert sorted(subset.val_indices[:5]) == sorted(permutation(labels, 0, 2)[-5:])  # the order's last five
    assert sorted(subset.val_indices[5:]) == sorted(permutation(labels, 1, 2)[-3:])
    long_tail = subsample_long_tail(np.repeat(np.arange(3), [10, 6, 1]), 3, majority_count=1000, ratio=1.0, seed=2,
                                    val_count=100)  # fmt: skip
    # v = (5, 3, 0); n_max = 10 - 5 = 5; ratio 1 wants 5 of each, capped at what is left: (5, 3, 1)
    assert long_tail.val_counts == (5, 3, 0) and long_tail.class_counts == (5, 3, 1)


def test_negative_val_count_is_a_data_error() -> None:
    with pytest.raises(DataError, match="val_count must be 0"):
        subsample_task(np.array([0, 0, 1, 1]), 0, 1, majority_count=2, ratio=1.0, seed=0, val_count=-1)


# ---------------------------------------------------------------------------------------------- the subsets


def test_val_count_zero_gives_the_subsets_of_before() -> None:
    """Without validation each class's training subset is the first n of its seeded order, as before the split."""
    labels = np.random.default_rng(5).integers(0, 3, size=300)
    for ratio in RATIOS:
        binary = subsample_task(labels, 2, 0, majority_count=80, ratio=ratio, seed=4, val_count=0)
        kept_majority = min(80, int((labels == 2).sum()))
        kept_minority = min(max(1, int(np.floor(ratio * kept_majority + 0.5))), int((labels == 0).sum()))
        expected = [
            np.sort(permutation(labels, 2, 4)[:kept_majority]),
            np.sort(permutation(labels, 0, 4)[:kept_minority]),
        ]
        assert np.array_equal(binary.indices, np.concatenate(expected))
        assert len(binary.val_indices) == 0 and binary.val_counts == (0, 0)
        assert np.array_equal(
            binary.indices, subsample_task(labels, 2, 0, majority_count=80, ratio=ratio, seed=4).indices
        )
        long_tail = subsample_long_tail(labels, 3, majority_count=80, ratio=ratio, seed=4, val_count=0)
        parts = [np.sort(permutation(labels, c, 4)[:n]) for c, n in enumerate(long_tail.class_counts)]
        assert np.array_equal(long_tail.indices, np.concatenate(parts)) and len(long_tail.val_indices) == 0


@pytest.mark.parametrize("long_tail", [False, True])
def test_validation_is_disjoint_from_every_ratio_and_the_same_at_each(long_tail: bool) -> None:
    labels = np.repeat(np.arange(3), [90, 60, 40])

    def subset(ratio: float, seed: int = 1):  # noqa: ANN202
        if long_tail:
            return subsample_long_tail(labels, 3, majority_count=1000, ratio=ratio, seed=seed, val_count=25)
        return subsample_task(labels, 0, 2, majority_count=1000, ratio=ratio, seed=seed, val_count=25)

    subsets = [subset(ratio) for ratio in RATIOS]
    val = subsets[0].val_indices
    for s in subsets:
        assert np.array_equal(s.val_indices, val)
        assert not set(s.indices) & set(val)
    for larger, smaller in zip(subsets, subsets[1:], strict=False):
        assert set(smaller.indices) <= set(larger.indices)  # still nested
    assert not np.array_equal(subset(0.5, seed=2).val_indices, val)
    # the head trains on 90 - 25 = 65 at ratio 1: every image not held out
    assert subsets[0].class_counts[0] == 65 and len(set(subsets[0].indices) | set(val)) >= 65 + 25


# ---------------------------------------------------------------------------------------------- digits (in memory)


@pytest.fixture(scope="module")
def digits_task() -> TaskData:
    return prepare_task(open_digits(), ("1", "8"), 8)


def test_digits_validation_is_train_split_images_outside_every_subset(digits_task: TaskData) -> None:
    task = digits_task
    assert task.val_images is None and task.val_source == "train"
    validations = []
    for ratio in RATIOS:
        subset = create_subset(task, majority_count=60, ratio=ratio, seed=0, val_count=30)
        validation = create_validation(task, subset, 30)
        assert validation is not None and validation.images is task.train_images  # never a test image
        assert not set(validation.indices) & set(subset.indices)
        assert validation.counts(task.classes) == {"1": 30, "8": 30}
        validations.append(validation.ids)
    assert all(ids == validations[0] for ids in validations)
    other_seed = create_subset(task, majority_count=60, ratio=0.5, seed=1, val_count=30)
    assert create_validation(task, other_seed, 30).ids != validations[0]
    no_val = create_subset(task, majority_count=60, ratio=0.5, seed=0, val_count=0)
    assert create_validation(task, no_val, 0) is None
    assert subset_record(task, no_val, None)["val"] == {} and subset_record(task, no_val, None)["val_source"] is None


def test_no_validation_when_a_class_has_no_image_to_spare() -> None:
    """A class of one image keeps it for training (v = min(100, 1 // 2) = 0): the run then validates on nothing."""
    images = np.zeros((5, 8, 8, 3), dtype=np.uint8)
    task = TaskData(("a", "b"), images, np.array([0, 0, 0, 0, 1]), tuple("01234"), images[:2], np.array([0, 1]), ())
    subset = create_subset(task, majority_count=100, ratio=1.0, seed=0, val_count=100)
    assert subset.val_counts == (2, 0) and subset.class_counts == (2, 1)
    assert create_validation(task, subset, 100) is None


def test_test_ids_are_indices_in_the_test_split(digits_task: TaskData) -> None:
    source = open_digits()
    ids = np.array([int(i) for i in digits_task.test_ids])
    assert len(ids) == len(digits_task.test_labels)
    names = np.array(source.test.classes)[source.test.labels[ids]]
    assert np.array_equal(names, np.array(digits_task.classes)[digits_task.test_labels])


# ---------------------------------------------------------------------------------------------- ImageFolder


def write_folder(root: Path, splits: dict[str, dict[str, int]]) -> Path:
    """root/<split>/<class>/NNN.png, tiny images of a colour per class and split."""
    for s, (split, classes) in enumerate(splits.items()):
        for c, (name, count) in enumerate(classes.items()):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (6, 5), (40 * c, 60 * s, 5 * i)).save(root / split / name / f"{i:03d}.png")
    return root


def test_folder_ids_are_paths_from_the_root_and_carved_validation_comes_from_train(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", {"train": {"a": 10, "b": 6}, "test": {"a": 3, "b": 2}})
    source = open_source(root)
    assert source.val is None and source.val_split == ""
    task = prepare_task(source, ("a", "b"), 8)
    assert task.test_ids == ("test/a/000.png", "test/a/001.png", "test/a/002.png", "test/b/000.png", "test/b/001.png")
    subset = create_subset(task, majority_count=100, ratio=1.0, seed=0, val_count=100)
    validation = create_validation(task, subset, 100)
    # a: 10 images, 5 held out, 5 trained; b: 6, 3 held out, min(5, 3) = 3 trained
    assert subset.class_counts == (5, 3) and validation.counts(task.classes) == {"a": 5, "b": 3}
    record = subset_record(task, subset, validation)
    assert record["val_source"] == "train" and all(i.startswith("train/a/") for i in record["val"]["a"])
    for name in ("a", "b"):
        assert not set(record["val"][name]) & set(record["train"][name])
        assert len(set(record["val"][name]) | set(record["train"][name])) == {"a": 10, "b": 6}[name]


def test_own_val_beside_test_is_the_validation_split(tmp_path: Path) -> None:
    root = write_folder(
        tmp_path / "data", {"train": {"a": 10, "b": 6}, "test": {"a": 3, "b": 2}, "val": {"a": 4, "b": 1}}
    )
    source = open_source(root)
    assert source.test_split == "test" and source.val_split == "val" and len(source.val) == 5
    for cache in (None, tmp_path / "cache"):  # the decode cache serves the val split like the others
        task = prepare_task(source, ("a", "b"), 8, cache_dir=cache)
        assert task.val_source == "val" and task.val_problem == ""
        subset = create_subset(task, majority_count=100, ratio=1.0, seed=0, val_count=100)
        assert subset.class_counts == (10, 6) and len(subset.val_indices) == 0  # nothing carved from train
        validation = create_validation(task, subset, 100)
        assert validation.source == "val" and validation.counts(task.classes) == {"a": 4, "b": 1}  # all of val/
        assert validation.ids == ("val/a/000.png", "val/a/001.png", "val/a/002.png", "val/a/003.png", "val/b/000.png")
    assert create_validation(task, create_subset(task, majority_count=100, ratio=1.0, seed=0), 0) is None
    without = prepare_task(source, ("a", "b"), 8, validation=False)
    assert without.val_images is None
    bare = write_folder(tmp_path / "bare", {"train": {"a": 10, "b": 6}, "test": {"a": 3, "b": 2}})
    assert open_source(bare).fingerprint != source.fingerprint  # val/ is part of the data set's identity


def test_valid_folder_counts_too_and_a_lone_val_is_the_test_split(tmp_path: Path) -> None:
    both = open_source(write_folder(tmp_path / "both", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1},
                                                        "valid": {"a": 1, "b": 1}}))  # fmt: skip
    assert both.test_split == "test" and both.val_split == "valid"
    lone = open_source(write_folder(tmp_path / "lone", {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}}))
    assert lone.test_split == "val" and lone.val is None


def test_own_val_without_a_class_is_a_one_line_error_unless_validation_is_off(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", {"train": {"a": 4, "b": 4}, "test": {"a": 1, "b": 1}, "val": {"a": 2}})
    source = open_source(root)
    with pytest.raises(DataError, match=r"class 'b' has no images in .*val/b"):
        check_val_classes(source, ("a", "b"), 100)  # what a grid can check before it decodes anything
    check_val_classes(source, ("a", "b"), 0)
    check_val_classes(source, ("a",), 100)
    task = prepare_task(source, ("a", "b"), 8)
    subset = create_subset(task, majority_count=100, ratio=1.0, seed=0, val_count=100)
    assert subset.val_counts == (0, 0) and subset.class_counts == (4, 4)  # never carved: the data set has val/
    with pytest.raises(DataError, match=r"class 'b' has no images in .*val/b, .*; add some, or pass --val-count 0$"):
        create_validation(task, subset, 100)
    assert create_validation(task, subset, 0) is None
    (root / "val" / "b").mkdir()
    (root / "val" / "b" / "broken.png").write_bytes(b"not an image")
    task = prepare_task(open_source(root), ("a", "b"), 8)
    with pytest.raises(
        DataError, match=r"^validation split val/: no image of class 'b' could be read .*--val-count 0$"
    ):
        create_validation(task, subset, 100)
    result = CliRunner().invoke(cli.app, ["run", "--data", str(root), "--classes", "a", "b", "--epochs", "1",
                                          "--img-size", "8", "--seeds", "1", "--ratios", "1", "--methods", "ce",
                                          "--out", str(tmp_path / "runs")])  # fmt: skip
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: validation split val/: no image of class 'b' could be read")
    assert "Traceback" not in result.output and result.output.count("error") == 1


def test_run_folder_sends_the_validation_outputs_back(tmp_path: Path) -> None:
    assert RUN_FILES[-2:] == (VAL_OUTPUTS_FILE, "result.json")
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.write_val_outputs(np.zeros((2, 2), np.float32), np.array([0, 1]), ["train/a/1.png", "train/b/0.png"])
    (folder.path / "result.json").write_text('{"status": "finished"}')
    files = folder.read_files().files
    assert set(files) == {VAL_OUTPUTS_FILE, "result.json"}
    copy = RunFolder(tmp_path / "copy")
    copy.store(folder.read_files())
    with np.load(copy.val_outputs) as stored:
        assert stored["ids"].tolist() == ["train/a/1.png", "train/b/0.png"] and stored["labels"].dtype == np.int64


# ---------------------------------------------------------------------------------------------- end to end


def test_run_writes_validation_metrics_outputs_and_ids(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = CliRunner().invoke(cli.app, ["run", "--epochs", "1", "--img-size", "8", "--seeds", "1", "--ratios", "0.5",
                                          "--methods", "ce", "--majority-count", "60", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    run = out / "fine__resnet18__ce__r0.5__s0"
    record = json.loads((run / "result.json").read_text())
    source = open_digits()
    held = {c: min(100, len(source.train.indices_of(c)) // 2) for c in ("1", "8")}  # about 68 of ~137 digits each
    assert record["val_counts"] == held and record["train_counts"] == {"1": 60, "8": 30}
    metrics = record["metrics"]
    assert {
        "val_minority_acc",
        "val_majority_acc",
        "val_balanced_acc",
        "val_acc",
        "val_macro_f1",
        "val_confusion",
    } <= set(metrics)
    assert "val_feature_silhouette" not in metrics
    with np.load(run / VAL_OUTPUTS_FILE) as val:
        logits, labels, ids = val["logits"], val["labels"], val["ids"].tolist()
    assert logits.dtype == np.float32 and logits.shape == (sum(held.values()), 2)
    minority = labels == 1
    assert metrics["val_minority_acc"] == pytest.approx(float((logits[minority].argmax(axis=1) == 1).mean()))
    confusion = np.zeros((2, 2), dtype=int)  # rows: true class, columns: predicted, from the saved logits
    np.add.at(confusion, (labels, logits.argmax(axis=1)), 1)
    assert metrics["val_confusion"] == confusion.tolist()
    assert np.bincount(labels).tolist() == [held["1"], held["8"]]
    # ids are indices into digits' train split, of the right class, and none of them was trained on
    assert [source.train.classes[source.train.labels[int(i)]] for i in ids] == [("1", "8")[y] for y in labels]
    subset = json.loads((run / "subset.json").read_text())
    assert subset["val_source"] == "train" and subset["val"]["8"] == ids[held["1"] :]
    assert not set(ids) & set(subset["train"]["1"] + subset["train"]["8"])
    with np.load(run / "test_outputs.npz") as test:
        test_ids, test_labels = test["ids"].tolist(), test["labels"]
    assert [source.test.classes[source.test.labels[int(i)]] for i in test_ids] == [("1", "8")[y] for y in test_labels]
    # deployment and calibration metrics at the run's training prior, as the report would recompute them
    assert record["deploy_prior"] == pytest.approx({"1": 60 / 90, "8": 30 / 90})
    with np.load(run / "test_outputs.npz") as test:
        test_logits = test["logits"]
    expected = {
        **deployment_metrics(test_labels, test_logits, [60 / 90, 30 / 90]),
        **calibration_metrics(test_labels, test_logits),
    }
    assert set(expected) <= set(metrics)
    for key, value in expected.items():
        assert metrics[key] == (None if value is None else pytest.approx(value)), key
