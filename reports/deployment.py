"""Deployment and calibration metrics recomputed at report time from the runs' saved test logits: at a prior the
user gives (``bench report --deploy-prior``), or filled in for runs written before these metrics existed.

numpy + scikit-learn only: no torch, no model re-run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from bench.calibration import calibration_metrics
from bench.deployment import deployment_metrics
from reports.collect import Collection, RunRecord
from reports.ensemble import OUTPUTS_FILE, scalar_metrics
from reports.posthoc import adjust_logits, load_outputs, record_prior, run_deploy_prior


def parse_deploy_prior(text: str, classes: Sequence[str]) -> np.ndarray:
    """The deploy prior [C] in ``classes`` order from ``--deploy-prior`` text: a share P in (0, 1) of the minority
    of a binary task (prior (1 - P, P)), or ``name=share,name=share,...`` naming every class (shares > 0,
    normalised to sum 1). ValueError with a one-line message naming the classes otherwise."""
    names = ", ".join(classes)
    text = text.strip()
    if "=" not in text:
        try:
            share = float(text)
        except ValueError:
            raise ValueError(
                f"deploy prior {text!r}: expected the minority's share in (0, 1) or name=share,... for the classes "
                f"{names}"
            ) from None
        if len(classes) != 2:
            raise ValueError(f"deploy prior {text!r}: a single share needs a binary task; name every class ({names})")
        if not 0 < share < 1:
            raise ValueError(f"deploy prior {text!r}: the minority's share must lie in (0, 1)")
        return np.array([1.0 - share, share])
    shares: dict[str, float] = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in classes:
            raise ValueError(f"deploy prior {text!r}: unknown class {name!r} (classes: {names})")
        if name in shares:
            raise ValueError(f"deploy prior {text!r}: class {name!r} given twice")
        try:
            shares[name] = float(value)
        except ValueError:
            raise ValueError(f"deploy prior {text!r}: {value.strip()!r} of {name!r} is not a number") from None
        if not math.isfinite(shares[name]) or shares[name] <= 0:
            raise ValueError(f"deploy prior {text!r}: the share of {name!r} must be a number > 0")
    missing = [name for name in classes if name not in shares]
    if missing:
        raise ValueError(f"deploy prior {text!r}: no share for {', '.join(missing)} (name every class: {names})")
    prior = np.array([shares[name] for name in classes])
    return prior / prior.sum()


def _recomputed(record: RunRecord, prior: np.ndarray | None, fill_only: bool) -> dict[str, float] | str:
    """The record's metrics with its deploy and calibration metrics recomputed from its test logits (its training
    prior, or its stored deploy prior when filling, where ``prior`` is None), or why they cannot be."""
    training = record_prior(record)
    deploy = prior if prior is not None else (run_deploy_prior(record) if fill_only else None)
    deploy = deploy if deploy is not None else training
    if deploy is None or (record.posthoc_tau is not None and training is None):
        return "no training count > 0 for every class"
    outputs = load_outputs(record.folder / OUTPUTS_FILE, len(record.classes))
    if isinstance(outputs, str):
        return outputs
    labels, logits = outputs
    if record.posthoc_tau is not None and training is not None:
        logits = adjust_logits(logits, training, record.posthoc_tau)
    fresh = {**deployment_metrics(labels, logits, deploy), **calibration_metrics(labels, logits)}
    if fill_only:
        return {**scalar_metrics(fresh), **record.metrics}
    kept = {name: value for name, value in record.metrics.items() if name not in fresh}
    return {**kept, **scalar_metrics(fresh)}  # an undefined (None) metric replaces a stale value by nothing


def redeploy(collection: Collection, prior: Sequence[float] | None = None, *, fill_only: bool = False) -> Collection:
    """``collection`` with the deploy and calibration metrics of every finished run (and post-hoc row, whose logits
    are adjusted by its tau) recomputed from its ``test_outputs.npz`` at ``prior`` [C] (normalised; None: each run's
    training prior). A prior applies to the runs with as many classes; others keep their metrics (a warning).
    ``fill_only``: only add the metrics a record lacks (runs written before them), at ``prior`` or else the run's
    recorded deploy prior or training prior; existing values stay. Ensemble rows are left as they are."""
    given = None if prior is None else np.asarray(prior, dtype=np.float64)
    if given is not None and (given.ndim != 1 or not np.isfinite(given).all() or np.any(given <= 0)):
        raise ValueError(f"a deploy prior holds one share > 0 per class, got {given.tolist()}")
    warnings = list(collection.warnings)
    skipped: list[str] = []
    records = []
    for record in collection.records:
        if record.status != "finished" or record.members:
            records.append(record)
            continue
        if given is not None and len(given) != len(record.classes):
            skipped.append(f"{record.folder}: a prior of {len(given)} shares for {len(record.classes)} classes")
            records.append(record)
            continue
        metrics = _recomputed(record, given, fill_only)
        if isinstance(metrics, str):
            skipped.append(f"{record.folder}: {metrics}")
            records.append(record)
            continue
        records.append(replace(record, metrics=metrics))
    if skipped:
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        warnings.append(
            f"deployment and calibration metrics not recomputed for {len(skipped)} run(s): {skipped[0]}{more}"
        )
    return Collection(records=records, warnings=warnings, incomplete=collection.incomplete)
