"""What the asked ratios give a task (bench.data.feasibility): the run's own counts and a note per shortfall."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data import DataError, long_tail_counts, subsample_task
from bench.data.feasibility import check_feasibility, training_counts


def test_ratios_the_data_cannot_give_are_named() -> None:
    """The new user's case: 60 majority images, --ratios 0.01,0.001 both train 60 vs 1."""
    feasibility = check_feasibility({"deer": 60, "horse": 40}, [1, 0.1, 0.01, 0.001], majority_count=10000)
    assert [(o.ratio, o.counts) for o in feasibility.outcomes] == [
        (1.0, (60, 40)), (0.1, (60, 6)), (0.01, (60, 1)), (0.001, (60, 1))
    ]  # fmt: skip
    assert feasibility.outcomes[3].actual == pytest.approx(1 / 60)
    assert feasibility.notes == (
        "minority horse has only 40 images; ratio 1 needs 60 (actual ratio 0.667)",
        "ratio 0.01 asks 0.6 minority images of 60; it gets 1 (actual ratio 0.0167)",
        "ratio 0.001 asks 0.06 minority images of 60; it gets 1 (actual ratio 0.0167)",
        "ratios 0.01 and 0.001 give the same training subset (60 vs 1)",
    )


def test_a_ratio_within_tolerance_has_no_note() -> None:
    # 136 / 131 at ratio 1 is 0.963, within 10 %; 3.2 minority images round to 3 (0.375 for 0.4)
    assert check_feasibility({"1": 136, "8": 131}, [1], majority_count=10000).notes == ()
    assert check_feasibility({"a": 8, "b": 8}, [0.4], majority_count=8).notes == ()
    # majority_count caps the majority (60 of 500); the ratio is met, so nothing to say
    assert check_feasibility({"a": 500, "b": 500}, [0.1, 0.5], majority_count=60).notes == ()


def test_counts_are_the_runs_own() -> None:
    """training_counts is what subsample_task and long_tail_counts keep (the run's functions), not a copy."""
    labels = np.repeat([0, 1], [37, 25])
    for ratio in (1, 0.5, 0.3, 0.1, 0.05, 0.001):
        subset = subsample_task(labels, 0, 1, majority_count=30, ratio=ratio, seed=4)
        assert training_counts([37, 25], majority_count=30, ratio=ratio) == subset.class_counts
        assert training_counts([50, 20, 9], majority_count=40, ratio=ratio) == long_tail_counts(
            [50, 20, 9], majority_count=40, ratio=ratio
        )


def test_long_tailed_task_notes() -> None:
    feasibility = check_feasibility({"a": 60, "b": 30, "c": 5}, [1, 0.1, 0.01, 0.001], majority_count=100)
    assert [o.counts for o in feasibility.outcomes] == [(60, 30, 5), (60, 18, 5), (60, 6, 1), (60, 1, 1)]
    assert feasibility.notes == (
        "ratio 1 is short of images: b has only 30 images, needs 60; c has only 5 images, needs 60 "
        "(actual ratio 0.0833)",
        "ratio 0.1 is short of images: c has only 5 images, needs 6 (actual ratio 0.0833)",
        "ratio 0.01 asks 0.6 tail images of 60; it gets 1 (actual ratio 0.0167)",
        "ratio 0.001 asks 0.06 tail images of 60; it gets 1 (actual ratio 0.0167)",
    )
    same = check_feasibility({"a": 10, "b": 10, "c": 10}, [0.01, 0.001], majority_count=10)
    assert same.same_subsets == ("ratios 0.01 and 0.001 give the same training subset (10 .. 1 per class, 12 in all)",)


def test_a_class_without_images_is_an_error() -> None:
    with pytest.raises(DataError, match="class horse has no images to train on"):
        check_feasibility({"deer": 60, "horse": 0}, [0.1], majority_count=100)


def test_validation_images_are_held_out_before_the_ratio() -> None:
    # 60 deer and 40 horses, 10 validation images each: 50 vs 30 left to train on; ratio 1 wants 50 horses, gets 30
    feasibility = check_feasibility({"deer": 60, "horse": 40}, [1, 0.1], majority_count=10000, val_count=10)
    assert [o.counts for o in feasibility.outcomes] == [(50, 30), (50, 5)]
    assert feasibility.notes == (
        "minority horse has only 30 images to train on (10 more for validation); ratio 1 needs 50 (actual ratio 0.6)",
    )
    # at most half a class is held out: 100 -> 50 held, 50 left; 7 -> 3 held, 4 left
    assert training_counts([100, 7], majority_count=100, ratio=1, val_count=100) == (50, 4)
    # long-tailed: [50, 20, 9] less (5, 5, 4) = [45, 15, 5] before the profile: n_max 45, 45 x 0.1^0.5 = 14.2 -> 14,
    # 45 x 0.1 = 4.5 -> 4 (without validation it would be 50, 15, 5)
    assert training_counts([50, 20, 9], majority_count=100, ratio=0.1, val_count=5) == (45, 14, 4)
    labels = np.repeat([0, 1], [37, 25])  # the run's own subset agrees
    subset = subsample_task(labels, 0, 1, majority_count=30, ratio=1, seed=4, val_count=12)
    assert training_counts([37, 25], majority_count=30, ratio=1, val_count=12) == subset.class_counts == (25, 13)
