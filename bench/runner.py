"""One training run: seed, subsample, build, train, evaluate the final model, write the run folder."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backbones import BackboneError, TappedBackbone, create_backbone
from bench.calibration import calibration_metrics
from bench.checkpoint import Checkpoints, TrainingState
from bench.config import ConfigError, RunConfig, TrainSettings
from bench.data import (
    DataError,
    ImageStack,
    LongTailSubset,
    TaskSubset,
    compute_channel_stats,
    create_loader,
    create_test_transform,
    create_train_transform,
    oversampled_size,
    set_loader_epoch,
    subsample_long_tail,
    subsample_task,
)
from bench.deployment import deployment_metrics, training_prior
from bench.device import DeviceSetup, create_grad_scaler, prepare_model
from bench.engine import BatchCallback, NonFiniteLossError, evaluate, train_one_epoch
from bench.knn import knn_accuracy, needs_knn
from bench.methods import create_method_loss, drw_epoch, parse_method
from bench.metrics import MAJORITY, MINORITY, classification_metrics, feature_separation, long_tail_metrics
from bench.results import RunFolder
from bench.task import TaskData
from losses import ClassifierRef

EpochCallback = Callable[[int, int, dict[str, float]], None]  # (epoch, epochs, epoch summary)
#: Errors of a setting the user must change (one line, exit 2), raised rather than recorded as a failed run.
SETTING_ERRORS: tuple[type[Exception], ...] = (ConfigError, DataError, BackboneError)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run's initial weights depend only on its seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def create_scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine decay per epoch to 0 over the epochs after an optional linear warm-up (the authors' schedule)."""
    cosine_epochs = settings.epochs - settings.warmup_epochs
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cosine_epochs)
    if settings.warmup_epochs == 0:
        return cosine
    warmup = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1.0 / (settings.warmup_epochs + 1), total_iters=settings.warmup_epochs
    )
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[settings.warmup_epochs])


def create_optimizer(
    parameters: list[torch.nn.Parameter], settings: TrainSettings, device: torch.device
) -> torch.optim.Adam:
    """Adam with the run's learning rate and weight decay; on the CPU and CUDA torch's fused kernel (the same
    update as the default one up to float rounding, in one pass over all tensors instead of a Python loop: a
    ResNet-18 step's Adam update takes ~9 ms instead of ~60 ms on a 2-core CPU)."""
    fused = True if device.type in ("cpu", "cuda") else None
    return torch.optim.Adam(parameters, lr=settings.lr, weight_decay=settings.weight_decay, fused=fused)


def _normalisation(
    model: torch.nn.Module, settings: TrainSettings, images: np.ndarray | ImageStack, indices: np.ndarray
) -> dict[str, Any]:
    """Pretrained weights keep their own constants; from scratch, mean and std come from the run's training images,
    images[indices] (read in chunks)."""
    if settings.pretrained or settings.pretrained_file:
        config = model.model.pretrained_cfg
        return {"source": "pretrained", "mean": list(config["mean"]), "std": list(config["std"])}
    mean, std = compute_channel_stats(images, indices)
    return {"source": "train subset", "mean": list(mean), "std": list(std)}


def create_subset(
    task: TaskData, *, majority_count: int, ratio: float, seed: int, val_count: int = 0
) -> TaskSubset | LongTailSubset:
    """The run's training subset: the paper's binary protocol, or the long-tailed profile for C > 2 classes; with
    ``val_count`` > 0 and no own validation split, each class's validation images are carved from the train split."""
    carved = 0 if task.val_split else val_count
    if task.is_long_tail:
        return subsample_long_tail(
            task.train_labels,
            len(task.classes),
            majority_count=majority_count,
            ratio=ratio,
            seed=seed,
            val_count=carved,
        )
    return subsample_task(
        task.train_labels, MAJORITY, MINORITY, majority_count=majority_count, ratio=ratio, seed=seed, val_count=carved
    )


@dataclass(frozen=True, eq=False)
class Validation:
    """The images a run is validated on after training: ``images[indices]`` with ``labels[indices]``.

    images: uint8 [N, S, S, 3] (the train split's when carved from it, else the own validation split's); labels:
    int64 [N]; indices: int64 [V]; ids: [V] as in the run's outputs; source: "train", "val" or "valid".
    """

    images: np.ndarray | ImageStack
    labels: np.ndarray
    indices: np.ndarray
    ids: tuple[str, ...]
    source: str

    def counts(self, classes: tuple[str, ...]) -> dict[str, int]:
        """Validation images per class name."""
        held = self.labels[self.indices]
        return {name: int((held == label).sum()) for label, name in enumerate(classes)}


def create_validation(task: TaskData, subset: TaskSubset | LongTailSubset, val_count: int) -> Validation | None:
    """The run's validation images: the data set's own split when it has one, else those ``subset`` held out of the
    train split. None with ``val_count`` 0, or when some class has no validation image (a class of one image keeps
    it for training). DataError when the own split lacks a class."""
    if val_count == 0:
        return None
    if not task.val_split:
        if len(subset.val_counts) == 0 or min(subset.val_counts) == 0:
            return None
        indices = subset.val_indices
        return Validation(
            task.train_images, task.train_labels, indices, tuple(task.train_ids[i] for i in indices), "train"
        )
    if task.val_problem:
        raise DataError(task.val_problem)
    assert task.val_images is not None and task.val_labels is not None
    indices = np.arange(len(task.val_labels), dtype=np.int64)
    return Validation(task.val_images, task.val_labels, indices, task.val_ids, task.val_source)


def subset_record(task: TaskData, subset: TaskSubset | LongTailSubset, validation: Validation | None) -> dict[str, Any]:
    """What subset.json holds: the ids of the training and validation images per class, and where the validation
    images come from (None without validation)."""

    def by_class(ids: Sequence[str], labels: np.ndarray) -> dict[str, list[str]]:
        return {
            name: [i for i, label in zip(ids, labels, strict=True) if label == index]
            for index, name in enumerate(task.classes)
        }

    train = by_class([task.train_ids[i] for i in subset.indices], task.train_labels[subset.indices])
    if validation is None:
        return {"train": train, "val": {}, "val_source": None}
    val = by_class(validation.ids, validation.labels[validation.indices])
    return {"train": train, "val": val, "val_source": validation.source}


def task_metrics(
    task: TaskData, targets: np.ndarray, logits: np.ndarray, train_counts: tuple[int, ...], *, prefix: str = "test_"
) -> dict[str, object]:
    """Binary metrics (minority accuracy first) or, for C > 2 classes, the many-class ones, of one split: targets
    int [N], logits float [N, C]; keys start with ``prefix`` (``test_``, ``val_``)."""
    if task.is_long_tail:
        return long_tail_metrics(targets, logits, train_counts, prefix=prefix)
    return classification_metrics(targets, logits.argmax(axis=1).astype(np.int64), prefix=prefix)


def classifier_ref(model: TappedBackbone) -> ClassifierRef | None:
    """The backbone's classifier for losses that read its weights (bcl's prototypes); None when timm names none."""
    head = model.model.get_classifier()
    weight = getattr(head, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        return None
    return ClassifierRef(int(weight.shape[1]), lambda: head.weight)


def _build_training(
    config: RunConfig, task: TaskData, subset: TaskSubset | LongTailSubset, setup: DeviceSetup
) -> tuple[TappedBackbone, TrainingState, dict[str, Any]]:
    """Seeded from the run's seed: the model, optimizer, schedule, scaler and loss, and the normalisation."""
    settings = config.settings
    spec = parse_method(config.method)
    seed_everything(config.seed)
    model = create_backbone(
        config.backbone,
        num_classes=len(task.classes),
        taps=settings.stages if spec.needs_taps else (),
        pretrained=settings.pretrained,
        pretrained_file=settings.pretrained_file,
        img_size=settings.img_size,
        cosine_classifier=spec.cosine_classifier,
    )
    normalisation = _normalisation(model, settings, task.train_images, subset.indices)
    classifier = classifier_ref(model)
    model = prepare_model(model, setup)
    loss_fn = create_method_loss(
        spec, list(subset.class_counts), settings, feature_dims=model.tap_channels, classifier=classifier
    )
    loss_fn = loss_fn.to(setup.device)
    # the loss may own parameters (supcon's projection head): they train with the model
    optimizer = create_optimizer([*model.parameters(), *loss_fn.parameters()], settings, setup.device)
    state = TrainingState(model, optimizer, create_scheduler(optimizer, settings), create_grad_scaler(setup), loss_fn)
    return model, state, normalisation


class RunFailed(Exception):
    """A run failed for its own reasons (not a bad setting): it is recorded as a failed result and the grid goes
    on. ``epoch``: the epoch it failed in (0: before the first; the last epoch for its evaluation)."""

    def __init__(self, reason: str, epoch: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.epoch = epoch


def failure_reason(error: Exception) -> str:
    """One line: a diverged loss's own message, else the exception's type and message."""
    if isinstance(error, NonFiniteLossError):
        return str(error)
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


@contextlib.contextmanager
def failing_run(epoch: int, *, passing: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Turn an exception of the block into :class:`RunFailed` at ``epoch``, except the ``passing`` types (setting
    errors before training). KeyboardInterrupt and SystemExit are not Exceptions: they stop the grid as ever."""
    try:
        yield
    except passing:
        raise
    except Exception as error:
        raise RunFailed(failure_reason(error), epoch) from error


def check_trainable(subset: TaskSubset | LongTailSubset, run_id: str) -> None:
    """A training subset of one image cannot train (BatchNorm normalises over the batch): a setting to change,
    raised as a one-line ConfigError before anything is trained."""
    if len(subset.indices) < 2:
        raise ConfigError(
            f"{run_id}: its training subset holds {len(subset.indices)} image; training needs at least 2 (BatchNorm "
            "normalises over the batch); raise --majority-count"
        )


@dataclass
class _Clock:
    """A run's wall time: this attempt's plus the ``before`` seconds of earlier ones (from its checkpoint)."""

    started: float = field(default_factory=time.perf_counter)
    before: float = 0.0

    def seconds(self) -> float:
        return round(self.before + time.perf_counter() - self.started, 3)


def execute_run(
    config: RunConfig,
    task: TaskData,
    folder: RunFolder,
    setup: DeviceSetup,
    *,
    workers: int,
    checkpoint_minutes: float = math.inf,
    checkpoint_path: Path | None = None,
    on_resume: Callable[[int], None] | None = None,
    on_epoch: EpochCallback | None = None,
    on_batch: BatchCallback | None = None,
) -> dict[str, Any]:
    """Train ``config`` on ``task`` and write ``folder``; return the result record (status finished or failed).

    The model of the final epoch is evaluated on the whole test split: the test split never selects a model.
    A checkpoint at ``checkpoint_path`` (default: in ``folder``; :mod:`bench.checkpoint`) is resumed from; one is
    saved after an epoch when ``checkpoint_minutes`` have passed since the run (or its last checkpoint) began, and
    removed at the end.
    ``on_resume`` hears the epoch a checkpoint comes after.

    A bad setting (ConfigError, DataError, BackboneError) found before training is raised. Any other exception
    while the run builds, trains or evaluates (a diverged loss included) makes it a failed result, with the
    exception's type and message as its reason; errors writing the run folder (OSError) are raised.
    """
    clock = _Clock()
    settings = config.settings
    subset = create_subset(
        task, majority_count=settings.majority_count, ratio=config.ratio, seed=config.seed, val_count=settings.val_count
    )
    check_trainable(subset, config.run_id)
    validation = create_validation(task, subset, settings.val_count)
    checkpoints = Checkpoints(checkpoint_path or folder.checkpoint, config, workers=workers, minutes=checkpoint_minutes)
    try:
        metrics = _train_and_evaluate(
            config, task, folder, setup, subset, validation, checkpoints, clock,
            workers=workers, on_resume=on_resume, on_epoch=on_epoch, on_batch=on_batch,
        )  # fmt: skip
        outcome: dict[str, Any] = {"status": "finished", "failure": None, "metrics": metrics, "epochs": settings.epochs}
    except RunFailed as failure:
        reason = {"reason": failure.reason, "epoch": failure.epoch}
        outcome = {"status": "failed", "failure": reason, "epochs": failure.epoch}
    result = folder.finish(
        config,
        {
            **outcome,
            "train_counts": dict(zip(task.classes, subset.class_counts, strict=True)),
            # differs when the minority (the tail class) ran short
            "actual_ratio": round(subset.class_counts[-1] / subset.class_counts[0], 6),
            "test_counts": task.test_counts(),
            "val_counts": validation.counts(task.classes) if validation is not None else {},
            # the prior the test_deploy_* metrics re-weight the test confusion to: the training subset's shares
            "deploy_prior": dict(zip(task.classes, training_prior(subset.class_counts).tolist(), strict=True)),
            "skipped_files": len(task.skipped),
            **({"resumed_after_epochs": list(checkpoints.resumed_after)} if checkpoints.resumed_after else {}),
            "device": setup.description,
            "hardware": setup.hardware,
            "wall_seconds": clock.seconds(),
        },
    )
    checkpoints.remove()
    return result


def _train_and_evaluate(
    config: RunConfig,
    task: TaskData,
    folder: RunFolder,
    setup: DeviceSetup,
    subset: TaskSubset | LongTailSubset,
    validation: Validation | None,
    checkpoints: Checkpoints,
    clock: _Clock,
    *,
    workers: int,
    on_resume: Callable[[int], None] | None,
    on_epoch: EpochCallback | None,
    on_batch: BatchCallback | None,
) -> dict[str, Any]:
    """The body of :func:`execute_run`: build (or resume), train, evaluate on the test split and on ``validation``
    (nothing in training reads it); write every file of ``folder`` but result.json and return the test and
    validation metrics. Raises :class:`RunFailed` when the run fails for its own reasons."""
    settings = config.settings
    spec = parse_method(config.method)
    with failing_run(0, passing=SETTING_ERRORS):
        model, state, normalisation = _build_training(config, task, subset, setup)
        resumed = checkpoints.resume(state, setup.device)
        if checkpoints.discarded:  # it may have loaded part of its state before failing
            model, state, normalisation = _build_training(config, task, subset, setup)
    done_epochs, clock.before = (resumed.epoch, resumed.seconds) if resumed else (0, 0.0)
    if resumed and on_resume is not None:
        on_resume(resumed.epoch)
    folder.start(
        config,
        {
            "device": setup.description,
            "hardware": setup.hardware,
            "workers": workers,
            "torch_threads": torch.get_num_threads(),  # CPU numbers depend on it in the last bits
            "normalisation": normalisation,
            "taps": list(model.tap_modules),
            "classifier": "cosine" if spec.cosine_classifier else "linear",
            "train_counts": dict(zip(task.classes, subset.class_counts, strict=True)),
        },
        rows=resumed.rows if resumed else (),
    )
    folder.write_subset(subset_record(task, subset, validation))

    loss_fn, optimizer = state.loss, state.optimizer
    mean, std = normalisation["mean"], normalisation["std"]
    train_transform = create_train_transform(
        mean,
        std,
        randaug_ops=settings.randaug_ops,
        randaug_magnitude=settings.randaug_magnitude,
        randaug_strength=settings.randaug_strength,
    )
    train_loader = create_loader(
        task.train_images,
        task.train_labels,
        train_transform,
        indices=subset.indices,
        batch_size=settings.batch_size,
        train=True,
        oversample=spec.oversample,
        # every sampler's epoch has the subset's size (equal steps for every method), unless asked for C x n_max
        oversample_to=oversampled_size(subset.class_counts) if settings.oversample_epoch == "full" else None,
        oversample_from=drw_epoch(settings) if spec.deferred_sampling else None,
        workers=workers,
        seed=config.seed,
        pin_memory=setup.pin_memory,
    )

    def eval_loader(
        images: np.ndarray | ImageStack, labels: np.ndarray, indices: np.ndarray | None = None
    ) -> torch.utils.data.DataLoader:
        """images[indices] in a fixed order, with the test transform."""
        return create_loader(
            images,
            labels,
            create_test_transform(mean, std),
            indices=indices,
            batch_size=2 * settings.batch_size,
            train=False,
            workers=workers,
            seed=config.seed,
            pin_memory=setup.pin_memory,
        )

    test_loader = eval_loader(task.test_images, task.test_labels)

    for epoch in range(done_epochs + 1, settings.epochs + 1):
        epoch_started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        with failing_run(epoch):
            loss_fn.set_epoch(epoch)
            set_loader_epoch(train_loader, epoch)
            summary = train_one_epoch(model, train_loader, loss_fn, optimizer, state.scaler, setup, on_batch=on_batch)
            state.scheduler.step()
        row = {"epoch": epoch, "lr": lr, **summary, "seconds": round(time.perf_counter() - epoch_started, 3)}
        folder.append_epoch(row)
        if epoch < settings.epochs and checkpoints.due():
            checkpoints.save(state, epoch, clock.seconds(), folder.epoch_rows())
        if on_epoch is not None:
            on_epoch(epoch, settings.epochs, row)

    with failing_run(settings.epochs):
        outputs = evaluate(model, test_loader, setup)
        logits = outputs.logits * np.float32(loss_fn.logit_scale)  # ldam: the scaled cosines it trained on
        knn_metrics = {}
        if needs_knn(spec.aux):
            train_eval_loader = eval_loader(task.train_images, task.train_labels, subset.indices)
            knn_metrics = {"test_knn_acc": knn_accuracy(model, train_eval_loader, test_loader, setup)}
        val_outputs = None
        if validation is not None:  # the same path as the test split's, scaled alike
            evaluated = evaluate(model, eval_loader(validation.images, validation.labels, validation.indices), setup)
            val_outputs = dataclasses.replace(evaluated, logits=evaluated.logits * np.float32(loss_fn.logit_scale))
    folder.write_outputs(logits, outputs.features, outputs.targets, task.test_ids)
    if val_outputs is not None and validation is not None:
        folder.write_val_outputs(val_outputs.logits, val_outputs.targets, validation.ids)
    with failing_run(settings.epochs):
        val_metrics = {}
        if val_outputs is not None:
            val_metrics = task_metrics(
                task, val_outputs.targets, val_outputs.logits, subset.class_counts, prefix="val_"
            )
        return {
            **task_metrics(task, outputs.targets, logits, subset.class_counts),
            **deployment_metrics(outputs.targets, logits, training_prior(subset.class_counts)),
            **calibration_metrics(outputs.targets, logits),
            **feature_separation(outputs.features, outputs.targets, seed=config.seed),
            **knn_metrics,
            **val_metrics,
        }
