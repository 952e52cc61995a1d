"""Soft-voting ensembles from the runs' saved test logits (``test_outputs.npz``), as extra leaderboard rows.

Per task, ratio and seed, the softmax probabilities of finished runs are averaged:

- the same method across backbones -> section ``ens(<backbone>+<backbone>...)``, row = the method
  (``ens(resnet18+efficientnet_b0):ce``);
- all methods of one backbone -> section = that backbone, row ``ens(methods)`` (``ens(methods):resnet18``).

The averaged probabilities are scored like a run (binary or many-class metrics); the rows are then aggregated over
seeds like any other. Members must hold the same test labels in the same order, else the ensemble is skipped with a
warning. numpy only: no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from bench.calibration import calibration_metrics, softmax
from bench.deployment import deployment_metrics, training_prior
from bench.metrics import classification_metrics, long_tail_metrics
from reports.collect import Collection, RunRecord

OUTPUTS_FILE = "test_outputs.npz"
ENSEMBLE_PREFIX = "ens("
METHODS_ENSEMBLE = "ens(methods)"


def is_ensemble(record: RunRecord) -> bool:
    return record.backbone.startswith(ENSEMBLE_PREFIX) or record.method.startswith(ENSEMBLE_PREFIX)


def _load(record: RunRecord) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels int64 [N], logits float [N, C]) of a run, or None when its outputs are missing or unreadable."""
    try:
        with np.load(record.folder / OUTPUTS_FILE) as stored:
            return stored["labels"].astype(np.int64), stored["logits"]
    except (OSError, ValueError, KeyError):
        return None


def ensemble_metrics(labels: np.ndarray, probabilities: np.ndarray, train_counts: Sequence[int]) -> dict[str, object]:
    """Metrics of averaged probabilities [N, C] against labels [N]: binary (C = 2) or many-class (train_counts [C]),
    with the deployment metrics at the training prior and the calibration of the averaged probabilities."""
    if probabilities.shape[1] > 2:
        metrics = long_tail_metrics(labels, probabilities, train_counts)
    else:
        metrics = classification_metrics(labels, probabilities.argmax(axis=1).astype(np.int64))
    log_probabilities = np.log(np.clip(probabilities, np.finfo(np.float64).tiny, None))  # softmax gives them back
    return {
        **metrics,
        **deployment_metrics(labels, log_probabilities, training_prior(train_counts)),
        **calibration_metrics(labels, log_probabilities),
    }


def scalar_metrics(metrics: dict[str, object]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def soft_vote(
    members: Sequence[RunRecord], backbone: str, method: str, warnings: list[str]
) -> tuple[RunRecord, np.ndarray] | None:
    """One ensemble record over ``members`` (same task, ratio and seed) and its mean probabilities [N, C]; None (with
    a warning) when a member's outputs are missing or its test labels differ from the first member's."""
    first = members[0]
    name = f"{method}:{backbone}" if method == METHODS_ENSEMBLE else f"{backbone}:{method}"
    where = f"ensemble {name} of {first.task} at ratio {first.ratio:g}, seed {first.seed}"
    loaded = []
    for record in members:
        outputs = _load(record)
        if outputs is None:
            warnings.append(f"{where}: {record.folder / OUTPUTS_FILE} is missing or unreadable; ensemble skipped")
            return None
        loaded.append(outputs)
    labels, logits = loaded[0]
    for record, (other_labels, other_logits) in zip(members[1:], loaded[1:], strict=True):
        if other_labels.shape != labels.shape or not np.array_equal(other_labels, labels):
            warnings.append(f"{where}: test labels of {record.folder} differ from {first.folder}; ensemble skipped")
            return None
        if other_logits.shape != logits.shape:
            warnings.append(f"{where}: logits of {record.folder} have another shape; ensemble skipped")
            return None
    probabilities = np.mean([softmax(member_logits) for _, member_logits in loaded], axis=0)
    counts = [first.train_counts.get(c, 0) for c in first.classes]
    if probabilities.shape[1] > 2 and len(counts) != probabilities.shape[1]:
        warnings.append(f"{where}: {first.path} lacks the training counts per class; ensemble skipped")
        return None
    record = replace(
        first,
        backbone=backbone,
        method=method,
        metrics=scalar_metrics(ensemble_metrics(labels, probabilities, counts)),
        path=first.folder.parent / f".{name}__r{first.ratio:g}__s{first.seed}" / "result.json",
        wall_seconds=None,
        members=tuple(r.folder.name for r in members),
    )
    return record, probabilities


def ensemble_records(records: Sequence[RunRecord], warnings: list[str]) -> list[RunRecord]:
    """The soft-voting rows of ``records``: per (task, ratio, seed), each method across backbones and each backbone
    across methods, wherever at least two finished runs take part."""
    finished = [r for r in records if r.status == "finished" and not is_ensemble(r)]
    by_method: dict[tuple[str, str, float, int], list[RunRecord]] = {}
    by_backbone: dict[tuple[str, str, float, int], list[RunRecord]] = {}
    for r in finished:
        by_method.setdefault((r.task, r.method, r.ratio, r.seed), []).append(r)
        by_backbone.setdefault((r.task, r.backbone, r.ratio, r.seed), []).append(r)
    built: list[RunRecord] = []
    for (_, method, _, _), members in sorted(by_method.items()):
        if len(members) >= 2:
            members = sorted(members, key=lambda r: r.backbone)
            name = ENSEMBLE_PREFIX + "+".join(r.backbone for r in members) + ")"
            voted = soft_vote(members, name, method, warnings)
            if voted is not None:
                built.append(voted[0])
    for (_, backbone, _, _), members in sorted(by_backbone.items()):
        if len(members) >= 2:
            voted = soft_vote(sorted(members, key=lambda r: r.method), backbone, METHODS_ENSEMBLE, warnings)
            if voted is not None:
                built.append(voted[0])
    return built


def with_ensembles(collection: Collection) -> Collection:
    """``collection`` plus its soft-voting rows (and any warnings they raised)."""
    warnings = list(collection.warnings)
    extra = ensemble_records(collection.records, warnings)
    return Collection(records=[*collection.records, *extra], warnings=warnings, incomplete=collection.incomplete)
