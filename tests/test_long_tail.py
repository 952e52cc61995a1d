"""Many-class long-tailed tasks: the LT profile, seeded nested subsets, task resolution, metrics, kNN evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bench.config import ConfigError
from bench.data import long_tail_counts, subsample_long_tail, subsample_task
from bench.data.digits import open_digits
from bench.device import resolve_device
from bench.knn import knn_accuracy, knn_predict, needs_knn
from bench.metrics import (
    feature_separation,
    long_tail_metrics,
    mean_average_precision_at_k,
    shot_group,
    top_k_accuracy,
)
from bench.plan import _resolve_tasks, plan_run
from bench.task import prepare_task


def balanced_labels(per_class: int, num_classes: int) -> np.ndarray:
    return np.repeat(np.arange(num_classes), per_class)


# ---------------------------------------------------------------------------------------------- the LT profile


def test_long_tail_counts_by_hand() -> None:
    # n_i = floor(500 * 0.01^(i/9)) = floor(500 * 10^(-2i/9)): 10^(-2/9) = 0.59948 -> 299.74, 10^(-4/9) = 0.35938
    # -> 179.69, 10^(-6/9) = 0.21544 -> 107.72, 10^(-8/9) = 0.12915 -> 64.58, 10^(-10/9) = 0.07743 -> 38.71,
    # 10^(-12/9) = 0.04642 -> 23.21, 10^(-14/9) = 0.02783 -> 13.91, 10^(-16/9) = 0.01668 -> 8.34, 0.01 -> 5.
    counts = long_tail_counts([5000] * 10, majority_count=500, ratio=0.01)
    assert counts == (500, 299, 179, 107, 64, 38, 23, 13, 8, 5)
    # Cao et al.'s CIFAR-10-LT at imbalance factor 100 (n_max = 5000): head 5000, tail 50, 12,406 images in all.
    cifar = long_tail_counts([5000] * 10, majority_count=5000, ratio=0.01)
    assert cifar[0] == 5000 and cifar[-1] == 50 and sum(cifar) == 12406


def test_long_tail_counts_cap_and_floor() -> None:
    assert long_tail_counts([30, 30, 30], majority_count=500, ratio=0.25) == (30, 15, 7)  # n_max capped at 30
    assert long_tail_counts([100, 100, 3], majority_count=100, ratio=0.5) == (100, 70, 3)  # class 2 has only 3
    assert long_tail_counts([100, 100, 100], majority_count=10, ratio=0.01) == (10, 1, 1)  # at least 1 each
    assert long_tail_counts([50] * 4, majority_count=40, ratio=1.0) == (40, 40, 40, 40)


def test_long_tail_subset_nested_across_ratios_and_seeded() -> None:
    labels = balanced_labels(60, 5)
    subsets = {r: subsample_long_tail(labels, 5, majority_count=50, ratio=r, seed=3) for r in (1.0, 0.1, 0.01)}
    for r, subset in subsets.items():
        chosen = labels[subset.indices]
        assert np.bincount(chosen, minlength=5).tolist() == list(subset.class_counts)
        assert subset.class_counts == long_tail_counts([60] * 5, majority_count=50, ratio=r)
    for c in range(5):
        pick = {r: set(s.indices[labels[s.indices] == c].tolist()) for r, s in subsets.items()}
        assert pick[0.01] <= pick[0.1] <= pick[1.0]
    again = subsample_long_tail(labels, 5, majority_count=50, ratio=0.1, seed=3)
    assert np.array_equal(again.indices, subsets[0.1].indices)
    other = subsample_long_tail(labels, 5, majority_count=50, ratio=0.1, seed=4)
    assert not np.array_equal(other.indices, subsets[0.1].indices)


def test_long_tail_uses_the_binary_protocols_permutation() -> None:
    """Class 0 (the head) gets the same images as the binary protocol's majority for the same seed."""
    labels = balanced_labels(40, 3)
    binary = subsample_task(labels, 0, 1, majority_count=30, ratio=0.5, seed=7)
    long_tail = subsample_long_tail(labels, 3, majority_count=30, ratio=0.5, seed=7)
    assert np.array_equal(binary.indices[:30], long_tail.indices[:30])
    assert binary.class_counts == (30, 15)


def test_long_tail_rejects_a_missing_class_and_bad_ratio() -> None:
    with pytest.raises(ValueError, match="class index 2 has no images"):
        subsample_long_tail(balanced_labels(5, 2), 3, majority_count=5, ratio=0.5, seed=0)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        subsample_long_tail(balanced_labels(5, 3), 3, majority_count=5, ratio=0.0, seed=0)


# ---------------------------------------------------------------------------------------------- tasks


def test_task_lt_means_every_class_in_sorted_order() -> None:
    plan = plan_run(data=None, config_path=None, task_names=("lt",), classes=None, options={"ratios": "0.01"})
    assert plan.spec.tasks == (("lt", tuple(str(d) for d in range(10))),)
    cell = plan.spec.cells()[0]
    assert cell.classes == tuple(str(d) for d in range(10)) and cell.run_id == "lt__resnet18__ce__r0.01__s0"
    with pytest.raises(ConfigError, match="at least 3 classes"):
        _resolve_tasks(("lt",), None, {}, "data set 'pair'", ("a", "b"))


def test_config_file_gives_a_long_tailed_class_order(tmp_path) -> None:  # noqa: ANN001
    config = tmp_path / "lt.toml"
    config.write_text('data = "digits"\n[tasks.lt]\nclasses = ["7", "3", "5"]\n')
    plan = plan_run(data=None, config_path=config, task_names=("lt",), classes=None, options={})
    assert plan.spec.tasks == (("lt", ("7", "3", "5")),)


def test_prepare_task_labels_follow_the_task_class_order() -> None:
    source = open_digits()
    task = prepare_task(source, ("3", "1", "2"), 8)
    assert task.is_long_tail
    for label, name in enumerate(("3", "1", "2")):
        assert (task.train_labels == label).sum() == len(source.train.indices_of(name))
    assert task.test_counts() == {name: len(source.test.indices_of(name)) for name in ("3", "1", "2")}


# ---------------------------------------------------------------------------------------------- metrics


def test_shot_groups() -> None:
    assert [shot_group(n) for n in (101, 100, 20, 19, 1)] == ["many", "medium", "medium", "few", "few"]


def test_top_k_and_map5_by_hand() -> None:
    # six classes; the true class ranks 1st, 2nd and 6th (outside the top 5)
    logits = np.array(
        [
            [9.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # true 0: rank 1
            [1.0, 8.0, 9.0, 3.0, 4.0, 5.0],  # true 1: rank 2
            [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # true 5: rank 6
        ]
    )
    targets = np.array([0, 1, 5])
    assert mean_average_precision_at_k(targets, logits, 5) == pytest.approx((1 + 0.5 + 0) / 3)
    assert top_k_accuracy(targets, logits, 5) == pytest.approx(2 / 3)
    assert top_k_accuracy(targets, logits, 1) == pytest.approx(1 / 3)


def test_long_tail_metrics_by_hand() -> None:
    train_counts = [200, 101, 100, 20, 19, 5]  # many: 0, 1; medium: 2, 3; few: 4, 5
    targets = np.array([0, 0, 1, 1, 2, 3, 3, 4, 5, 5])
    predictions = np.array([0, 0, 1, 0, 2, 3, 0, 1, 5, 4])
    logits = np.eye(6)[predictions]
    metrics = long_tail_metrics(targets, logits, train_counts)
    # per-class accuracy: 2/2, 1/2, 1/1, 1/2, 0/1, 1/2
    assert metrics["test_per_class_acc"] == pytest.approx([1.0, 0.5, 1.0, 0.5, 0.0, 0.5])
    assert metrics["test_many_acc"] == pytest.approx(0.75)
    assert metrics["test_medium_acc"] == pytest.approx(0.75)
    assert metrics["test_few_acc"] == pytest.approx(0.25)
    assert metrics["test_balanced_acc"] == pytest.approx(3.5 / 6)
    assert metrics["test_acc"] == pytest.approx(0.6)
    # F1 per class: precision 2/4, 1/2, 1/1, 1/1, 0/1, 1/1 with the recalls above ->
    # 2/3, 1/2, 1, 2/3, 0, 2/3; their mean is 3.5 / 6
    assert metrics["test_macro_f1"] == pytest.approx(3.5 / 6)
    assert "test_top5_acc" in metrics and 0 <= metrics["test_map5"] <= 1
    assert metrics["test_confusion"][3] == [1, 0, 0, 1, 0, 0]


def test_long_tail_metrics_empty_group_and_few_classes() -> None:
    targets = np.array([0, 1, 2])
    metrics = long_tail_metrics(targets, np.eye(3)[targets], [500, 400, 300])
    assert metrics["test_many_acc"] == 1.0 and metrics["test_medium_acc"] is None and metrics["test_few_acc"] is None
    assert "test_top5_acc" not in metrics  # only when C > 5
    assert metrics["test_map5"] == 1.0


def test_feature_separation_of_many_classes_is_the_silhouette_only() -> None:
    features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0], [-0.9, -0.1]])
    result = feature_separation(features, np.array([0, 0, 1, 1, 2, 2]))
    assert set(result) == {"test_feature_silhouette"} and result["test_feature_silhouette"] > 0.8


# ---------------------------------------------------------------------------------------------- kNN


def test_needs_knn_only_for_metric_learning_losses() -> None:
    assert needs_knn(("triplet",)) and needs_knn(("fscl", "supcon"))
    assert not needs_knn(()) and not needs_knn(("fscl",))


def test_knn_predict_by_hand() -> None:
    train = np.array([[1.0, 0.0], [0.8, 0.2], [0.0, 1.0]])
    labels = np.array([0, 0, 1])
    # k = 5 asked, 3 training images: all three vote, class 0 wins 2:1 even for a test point nearest class 1
    assert knn_predict(train, labels, np.array([[0.1, 1.0]])).tolist() == [0]
    assert knn_predict(train, labels, np.array([[0.1, 1.0]]), k=1).tolist() == [1]


class _TwoClusters(nn.Module):
    """A fake tapped backbone: its last tap is the input's mean per channel (labels are separable there)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        pooled = x.mean(dim=(2, 3))
        return pooled[:, :2], [pooled[:, :1] * 0, pooled[:, :2]]


def test_knn_accuracy_over_the_last_tap() -> None:
    images = torch.zeros(8, 3, 2, 2)
    images[:4, 0] = 1.0  # class 0 points along channel 0, class 1 along channel 1
    images[4:, 1] = 1.0
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    loader = [(images[:5], labels[:5]), (images[5:], labels[5:])]
    assert knn_accuracy(_TwoClusters(), loader, loader, resolve_device("cpu", "off")) == 1.0


def test_long_tail_oversampling_balances_every_class_to_the_largest() -> None:
    from bench.data import create_loader, create_test_transform, oversampled_size

    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    images = np.zeros((10, 4, 4, 3), dtype=np.uint8)
    size = oversampled_size((6, 3, 1))
    loader = create_loader(images, labels, create_test_transform([0.0] * 3, [1.0] * 3), batch_size=30, train=True,
                           oversample=True, oversample_to=size)  # fmt: skip
    drawn = np.concatenate([batch_labels.numpy() for _, batch_labels in loader])
    assert size == 18 and len(drawn) == 18
    binary = create_loader(images, labels, create_test_transform([0.0] * 3, [1.0] * 3), batch_size=30, train=True,
                           oversample=True)  # fmt: skip
    assert sum(len(batch_labels) for _, batch_labels in binary) == 10  # without oversample_to: the subset's size


def test_doctor_checks_the_long_tailed_profile() -> None:
    from bench.data.feasibility import check_feasibility, indexed_counts

    source = open_digits()
    available = indexed_counts(source.train, tuple(str(d) for d in range(10)))
    at_ratio_1, at_small = check_feasibility(available, [1.0, 0.1], majority_count=130).outcomes
    assert (at_ratio_1.counts[0], at_ratio_1.counts[-1], at_ratio_1.note) == (130, 130, "")
    # head 130, tail floor(130 * 0.1) = 13: every digit has at least 130 training images
    assert (at_small.counts[0], at_small.counts[-1], at_small.note) == (130, 13, "")
    (short,) = check_feasibility(available, [1.0], majority_count=200).outcomes
    assert "8 has only 131 images, needs 133" in short.note  # n_max = the 133 zeros; the 8s have only 131
