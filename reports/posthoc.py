"""Post-hoc logit adjustment (Menon et al., ICLR 2021) from the runs' saved logits, as ``<method>+posthoc`` rows.

A model trained on a skewed prior favours the head classes; subtracting ``tau * log(prior)`` from its logits after
training undoes that at no cost. Per run, tau is chosen from :data:`POSTHOC_TAUS` to maximise the balanced accuracy
of its validation logits (``val_outputs.npz``; ties: the smallest tau), then applied to its test logits, which are
scored with the functions the runner uses. The prior is the run's training prior (``train_counts`` in its classes'
order). Nothing is trained and the test split never influences tau. numpy only: no torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import sklearn

from bench.calibration import calibration_metrics
from bench.deployment import deployment_metrics, training_prior
from reports.collect import Collection, RunRecord
from reports.ensemble import OUTPUTS_FILE, ensemble_metrics, scalar_metrics
from reports.posthoc_cache import CACHE_VERSION, PosthocCache

VAL_OUTPUTS_FILE = "val_outputs.npz"
POSTHOC_SUFFIX = "+posthoc"
#: The taus tried on each run's validation logits (0 = the logits as trained).
POSTHOC_TAUS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def adjust_logits(logits: np.ndarray, prior: Sequence[float], tau: float) -> np.ndarray:
    """``logits - tau * log(prior)``: logits float [N, C], prior [C] of shares > 0 (normalised or not: a constant
    shift of every logit changes nothing). float64 [N, C]."""
    prior = np.asarray(prior, dtype=np.float64)
    if prior.shape != (np.shape(logits)[-1],) or not np.all(prior > 0):
        raise ValueError(f"the prior must hold one share > 0 per class, got {prior.tolist()}")
    return np.asarray(logits, dtype=np.float64) - tau * np.log(prior)


def balanced_accuracy(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean over the classes present in labels int [N] of the share of their images whose argmax of logits [N, C] is
    right (the runner's balanced accuracy, binary or long-tailed)."""
    labels = np.asarray(labels)
    present, index = np.unique(labels, return_inverse=True)
    right = np.bincount(index, weights=np.argmax(logits, axis=1) == labels, minlength=len(present))
    recall = right / np.bincount(index, minlength=len(present))
    return float(np.average(recall))  # as scikit-learn's recall_score(..., labels=present, average="macro")


def choose_tau(
    val_logits: np.ndarray, val_labels: np.ndarray, prior: Sequence[float], taus: Sequence[float] = POSTHOC_TAUS
) -> float:
    """The tau of ``taus`` whose adjusted validation logits [N, C] have the highest balanced accuracy against
    val_labels [N]; ties go to the smallest tau."""
    if len(val_labels) == 0 or not taus:
        raise ValueError("choosing tau needs validation images and at least one tau")
    best_tau, best = 0.0, -1.0
    for tau in sorted(taus):
        score = balanced_accuracy(val_labels, adjust_logits(val_logits, prior, tau))
        if score > best:
            best_tau, best = float(tau), score
    return best_tau


def load_outputs(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray] | str:
    """(labels int64 [N], logits float [N, C]) of a saved ``*_outputs.npz`` of a run with ``num_classes`` classes,
    or why not (a short phrase): missing, unreadable, empty, or shapes or labels that do not fit."""
    try:
        with np.load(path) as stored:
            labels, logits = stored["labels"].astype(np.int64), stored["logits"]
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (OSError, ValueError, KeyError, EOFError) as exc:
        return f"{path.name} is unreadable ({exc})"
    if logits.ndim != 2 or logits.shape[1] != num_classes or labels.shape != (len(logits),):
        return f"{path.name} holds logits {logits.shape} and labels {labels.shape}, not [N, {num_classes}] and [N]"
    if len(labels) == 0 or labels.min() < 0 or labels.max() >= num_classes:
        return f"{path.name} holds no image or labels outside 0..{num_classes - 1}"
    return labels, logits


def record_prior(record: RunRecord) -> np.ndarray | None:
    """The run's training prior [C] by label (``train_counts`` in ``classes`` order); None when a class lacks it."""
    counts = [record.train_counts.get(name) for name in record.classes]
    if len(counts) < 2 or any(count is None or count <= 0 for count in counts):
        return None
    return training_prior([int(c) for c in counts if c is not None])


def run_deploy_prior(record: RunRecord) -> np.ndarray | None:
    """The prior [C] the runner computed the run's deploy metrics at (result.json ``deploy_prior``, by class name, in
    ``classes`` order, normalised); None when the result does not record one for every class."""
    try:
        stored = json.loads(record.path.read_text(encoding="utf-8")).get("deploy_prior")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    if not isinstance(stored, dict):
        return None
    shares = [stored.get(name) for name in record.classes]
    if not record.classes or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in shares):
        return None
    try:
        return training_prior([float(v) for v in shares if v is not None])
    except ValueError:
        return None


def scored_metrics(
    labels: np.ndarray, logits: np.ndarray, train_counts: Sequence[int], deploy_prior: Sequence[float]
) -> dict[str, object]:
    """What the runner reports for test logits [N, C] (less feature separation and kNN): the binary or long-tailed
    metrics, the deployment metrics at ``deploy_prior`` [C] and calibration."""
    return {
        **ensemble_metrics(labels, logits, train_counts),
        **deployment_metrics(labels, logits, deploy_prior),
        **calibration_metrics(labels, logits),
    }


def validation_metrics(labels: np.ndarray, logits: np.ndarray, train_counts: Sequence[int]) -> dict[str, object]:
    """The runner's ``val_*`` metrics of validation logits [N, C]: the test metrics' names with ``val_``."""
    metrics = ensemble_metrics(labels, logits, train_counts)
    return {"val_" + name.removeprefix("test_"): value for name, value in metrics.items()}


def posthoc_record(record: RunRecord, warnings: list[str]) -> RunRecord | None:
    """The ``<method>+posthoc`` row of one run with saved validation and test logits, its deploy metrics at the
    run's own deploy prior (:func:`run_deploy_prior`, else its training prior); None (with a warning) when its files
    or training counts do not allow it."""
    where = f"{record.folder}: post-hoc adjustment"
    prior = record_prior(record)
    if prior is None:
        warnings.append(f"{where}: no training count > 0 for every class of {list(record.classes)}; skipped")
        return None
    val, test = (load_outputs(record.folder / name, len(prior)) for name in (VAL_OUTPUTS_FILE, OUTPUTS_FILE))
    if isinstance(val, str) or isinstance(test, str):
        problems = [outputs for outputs in (val, test) if isinstance(outputs, str)]
        warnings.append(f"{where}: {'; '.join(problems)}; skipped")
        return None
    (val_labels, val_logits), (test_labels, test_logits) = val, test
    counts = [record.train_counts[name] for name in record.classes]
    tau = choose_tau(val_logits, val_labels, prior)
    test_adjusted = adjust_logits(test_logits, prior, tau)
    deploy_prior = run_deploy_prior(record)
    # the inputs are checked above; scikit-learn's checks of its arguments change no number and cost most of the time
    with sklearn.config_context(skip_parameter_validation=True):
        metrics = scored_metrics(test_labels, test_adjusted, counts, prior if deploy_prior is None else deploy_prior)
        metrics.update(validation_metrics(val_labels, adjust_logits(val_logits, prior, tau), counts))
    metrics["posthoc_tau"] = tau
    return posthoc_row(record, scalar_metrics(metrics))


def posthoc_row(record: RunRecord, metrics: dict[str, float]) -> RunRecord:
    """The ``<method>+posthoc`` row of ``record`` with its scored ``metrics`` (``posthoc_tau`` among them)."""
    return replace(
        record,
        method=record.method + POSTHOC_SUFFIX,
        metrics=metrics,
        posthoc_tau=metrics["posthoc_tau"],
        wall_seconds=None,
    )


def cache_version() -> str:
    """What a cached post-hoc row was computed with: :data:`~reports.posthoc_cache.CACHE_VERSION` and the taus."""
    return f"{CACHE_VERSION}:{','.join(f'{tau!r}' for tau in POSTHOC_TAUS)}"


def with_posthoc(
    collection: Collection, methods: Iterable[str] | None = None, *, cache_dir: Path | None = None
) -> Collection:
    """``collection`` plus a ``<method>+posthoc`` row for each finished, trained run (of ``methods``; None: every
    method) whose folder holds validation and test logits. Runs without ``val_outputs.npz`` (no validation split)
    are counted in one warning; unreadable files skip their run with a warning. To show every row at another deploy
    prior, call :func:`reports.deployment.redeploy` after this (it adjusts a post-hoc row's logits too).
    ``cache_dir``: keep the rows there for the next call (:class:`reports.posthoc_cache.PosthocCache`); a run whose
    files did not change since is not scored again.
    """
    wanted = None if methods is None else frozenset(methods)
    warnings = list(collection.warnings)
    candidates = [
        r
        for r in collection.records
        if r.status == "finished" and not r.derived and (wanted is None or r.method in wanted)
    ]
    without_validation = [r for r in candidates if not (r.folder / VAL_OUTPUTS_FILE).is_file()]
    if without_validation:
        warnings.append(
            f"post-hoc adjustment: {len(without_validation)} run(s) have no {VAL_OUTPUTS_FILE} (no validation split), "
            f"e.g. {without_validation[0].folder}; no {POSTHOC_SUFFIX} row for them"
        )
    cache = PosthocCache(cache_dir, cache_version()) if cache_dir is not None else None
    extra = []
    for record in candidates:
        if cache is not None:
            key, cached = cache.get(record)
            if cached is not None:
                extra.append(posthoc_row(record, cached))
                continue
        if (record.folder / VAL_OUTPUTS_FILE).is_file():
            adjusted = posthoc_record(record, warnings)
            if adjusted is not None:
                extra.append(adjusted)
                if cache is not None and key is not None:
                    cache.put(record, key, adjusted.metrics)
    if cache is not None:
        cache.keep_only({r.folder.name for r in collection.records})
        problem = cache.save()
        warnings += [problem] if problem is not None else []
    return Collection(records=[*collection.records, *extra], warnings=warnings, incomplete=collection.incomplete)
