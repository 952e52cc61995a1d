"""``bench speed``: where the time of a training run goes, measured side by side in one process.

(a) a minimal hand-written training step (plain timm model, cross-entropy, Adam) on a batch already in memory;
(b) the harness's own step (``train_one_epoch`` on the tapped backbone with the method loss) on the same batch,
    for ``ce`` and for ``fscl`` (CE + the feature-similarity loss on the tapped stages);
(c) the input pipeline alone: uint8 images -> augmented, normalised batches, per loader worker count;
(d) with an ImageFolder data set: one epoch of the harness (task preparation included) with a cold decode cache,
    a warm one, and without the cache, against a plain torchvision ImageFolder + PIL + transforms loop.

Steps (a) and (b) are timed in interleaved rounds and the median round is kept, so drift of the machine's load
hits both alike. Everything here measures; nothing in it changes how ``bench run`` trains.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backbones import create_backbone
from bench.config import PAPER_DEFAULTS, TrainSettings
from bench.data import DatasetSource, create_loader, create_train_transform, subsample_task
from bench.data import decode as decode_module
from bench.device import DeviceSetup, autocast, create_grad_scaler, prepare_model, to_device
from bench.engine import train_one_epoch
from bench.methods import create_method_loss, parse_method
from bench.metrics import MAJORITY, MINORITY
from bench.task import prepare_task

Progress = Callable[[str], None]


@dataclass(frozen=True)
class StepFigures:
    """Seconds per training step (median over rounds) of one backbone, batch and image size."""

    img_size: int
    batch_size: int
    minimal: float
    harness_ce: float
    harness_fscl: float

    @property
    def harness_over_minimal(self) -> float:
        """Speed of the harness step relative to the minimal one (1.0 = no overhead; target >= 0.95)."""
        return self.minimal / self.harness_ce

    @property
    def fscl_over_ce(self) -> float:
        """Time of a CE + similarity step over a CE step (target <= 1.10 at 32 px, <= 1.05 at 64 px)."""
        return self.harness_fscl / self.harness_ce

    def images_per_second(self, seconds: float) -> float:
        return self.batch_size / seconds


@dataclass(frozen=True)
class PipelineFigures:
    """Augmented images per second out of the loader, per worker count."""

    img_size: int
    images_per_second: dict[int, float]


@dataclass(frozen=True)
class EpochFigures:
    """Wall seconds of one training epoch over the same images, each way of feeding them."""

    images: int  # training images in the epoch
    cold_cache_prepare: float  # decode both classes of both splits into an empty cache
    warm_cache_prepare: float  # the same again: open the cache
    warm_cache_decodes: int  # image files decoded by the warm preparation (0 when the cache works)
    no_cache_prepare: float  # decode in memory (--no-decode-cache)
    harness_epoch: float  # one CE epoch of the harness over the cached images
    torchvision_epoch: float  # ImageFolder-style PIL decode + torchvision transforms of every image, every epoch

    @property
    def torchvision_over_harness(self) -> float:
        """How many times longer the torchvision epoch takes (target >= 1)."""
        return self.torchvision_epoch / self.harness_epoch


@dataclass
class SpeedReport:
    backbone: str
    device: str
    workers: tuple[int, ...]
    steps: list[StepFigures] = field(default_factory=list)
    pipelines: list[PipelineFigures] = field(default_factory=list)
    epochs: dict[int, EpochFigures] = field(default_factory=dict)
    memory: MemoryFigures | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [
            {**asdict(s), "harness_over_minimal": s.harness_over_minimal, "fscl_over_ce": s.fscl_over_ce}
            for s in self.steps
        ]
        for size, figures in self.epochs.items():
            data["epochs"][size]["torchvision_over_harness"] = figures.torchvision_over_harness
        return data


def _synchronize(setup: DeviceSetup) -> None:
    if setup.device.type == "cuda":
        torch.cuda.synchronize(setup.device)


def _timed(work: Callable[[], None], setup: DeviceSetup) -> float:
    _synchronize(setup)
    started = time.perf_counter()
    work()
    _synchronize(setup)
    return time.perf_counter() - started


def measure_steps(
    backbone: str,
    img_size: int,
    batch_size: int,
    setup: DeviceSetup,
    *,
    steps: int = 10,
    rounds: int = 5,
    stages: Sequence[int] | None = None,
) -> StepFigures:
    """Seconds per step of (a) a minimal step and (b) the harness's CE and CE + fscl steps, on one fixed batch.

    Each round times ``steps`` steps of each in turn (after one untimed round of warm-up); the median round wins.
    """
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, img_size, img_size, generator=generator)
    labels = torch.arange(batch_size) % 2
    settings = TrainSettings.from_options({**PAPER_DEFAULTS, "img_size": img_size, "batch_size": batch_size})
    counts = [batch_size // 2, batch_size - batch_size // 2]

    torch.manual_seed(0)
    plain = prepare_model(create_backbone(backbone, num_classes=2, taps=(), img_size=img_size).model, setup)
    plain_optimizer = torch.optim.Adam(plain.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    x, y = to_device(images, labels, setup)

    def minimal() -> None:
        for _ in range(steps):
            with autocast(setup):
                loss = F.cross_entropy(plain(x), y)
            plain_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            plain_optimizer.step()

    def harness(method: str) -> Callable[[], None]:
        spec = parse_method(method)
        torch.manual_seed(0)
        model = create_backbone(
            backbone, num_classes=2, taps=stages if spec.needs_taps else (), img_size=img_size
        )  # fmt: skip
        model = prepare_model(model, setup)
        loss_fn = create_method_loss(spec, counts, settings).to(setup.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        scaler = create_grad_scaler(setup)
        batches = [(images, labels)] * steps

        def step() -> None:
            train_one_epoch(model, batches, loss_fn, optimizer, scaler, setup)

        return step

    work = {"minimal": minimal, "ce": harness("ce"), "fscl": harness("fscl")}
    times: dict[str, list[float]] = {name: [] for name in work}
    for round_index in range(rounds + 1):
        for name, run in work.items():
            seconds = _timed(run, setup)
            if round_index > 0:  # the first round warms up allocators and kernels
                times[name].append(seconds / steps)
    median = {name: statistics.median(values) for name, values in times.items()}
    return StepFigures(img_size, batch_size, median["minimal"], median["ce"], median["fscl"])


def _identity_stats() -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    return (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def measure_pipeline(
    images: np.ndarray | Any, labels: np.ndarray, batch_size: int, workers: Sequence[int], *, batches: int = 30
) -> dict[int, float]:
    """Augmented images per second out of ``create_loader`` for each worker count, after the first batch."""
    mean, std = _identity_stats()
    result = {}
    for count in workers:
        loader = create_loader(
            images, labels, create_train_transform(mean, std), batch_size=batch_size, train=True, workers=count, seed=0
        )  # fmt: skip
        seen, started = 0, 0.0
        for index, (batch, _) in enumerate(loader):
            if index == 0:
                started = time.perf_counter()  # worker start-up and the first batch are not steady state
                continue
            seen += batch.shape[0]
            if index >= batches:
                break
        elapsed = time.perf_counter() - started
        result[count] = seen / elapsed if elapsed > 0 else float("nan")
        del loader
    return result


@contextlib.contextmanager
def count_decodes() -> Iterator[list[int]]:
    """Count the image files decoded in this process during the block (wraps the one function that decodes)."""
    counter = [0]
    original = decode_module.read_image

    def counting(path: Path, size: int) -> np.ndarray:
        counter[0] += 1
        return original(path, size)

    decode_module.read_image = counting
    try:
        yield counter
    finally:
        decode_module.read_image = original


@dataclass(frozen=True)
class EpochJob:
    """What a timed epoch trains: ``per_class`` training images of each of ``classes`` of ``source``."""

    source: DatasetSource
    classes: tuple[str, str]
    img_size: int
    batch_size: int
    per_class: int
    setup: DeviceSetup
    backbone: str
    workers: int


def _harness_epoch(job: EpochJob, cache_dir: Path | None) -> tuple[float, float, int]:
    """Seconds for task preparation (decode or cache), seconds of one CE epoch on ``job.per_class`` images of each
    class, and the number of those images."""
    started = time.perf_counter()
    task = prepare_task(job.source, job.classes, job.img_size, cache_dir=cache_dir)
    prepared = time.perf_counter()
    subset = subsample_task(task.train_labels, MAJORITY, MINORITY, majority_count=job.per_class, ratio=1.0, seed=0)
    mean, std = _identity_stats()
    loader = create_loader(
        task.train_images, task.train_labels, create_train_transform(mean, std), indices=subset.indices,
        batch_size=job.batch_size, train=True, workers=job.workers, seed=0, pin_memory=job.setup.pin_memory,
    )  # fmt: skip
    settings = TrainSettings.from_options({**PAPER_DEFAULTS, "img_size": job.img_size, "batch_size": job.batch_size})
    torch.manual_seed(0)
    model = prepare_model(create_backbone(job.backbone, num_classes=2, taps=(), img_size=job.img_size), job.setup)
    loss_fn = create_method_loss(parse_method("ce"), [job.per_class, job.per_class], settings).to(job.setup.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    epoch_started = time.perf_counter()
    train_one_epoch(model, loader, loss_fn, optimizer, create_grad_scaler(job.setup), job.setup)
    _synchronize(job.setup)
    return prepared - started, time.perf_counter() - epoch_started, len(subset.indices)


class PilFolder(torch.utils.data.Dataset):
    """What torchvision's ImageFolder does per item: open the file with PIL, convert to RGB, transform."""

    def __init__(self, samples: list[tuple[Path, int]], transform: Callable[[Any], torch.Tensor]) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from torchvision.datasets.folder import pil_loader

        path, label = self.samples[index]
        return self.transform(pil_loader(str(path))), label


def _torchvision_epoch(job: EpochJob) -> float:
    """One epoch the way the reference research code feeds a model: an ImageFolder-style dataset that opens each
    file with PIL and applies torchvision transforms every epoch; ``job.per_class`` images of each class (a seeded
    draw), the same batch size, model and loader job.workers as the harness's epoch."""
    from torch.utils.data import DataLoader
    from torchvision import transforms as T

    mean, std = _identity_stats()
    transform = T.Compose(
        [
            T.Resize((job.img_size, job.img_size)),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.4, 0.4, 0.4, 0.1),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    split = job.source.train
    assert split.paths is not None
    rng = np.random.default_rng(0)
    samples = [
        (split.paths[int(i)], label)
        for label, name in enumerate(job.classes)
        for i in rng.permutation(split.indices_of(name))[: job.per_class]
    ]

    loader = DataLoader(
        PilFolder(samples, transform), batch_size=job.batch_size, shuffle=True, num_workers=job.workers,
        persistent_workers=job.workers > 0, pin_memory=job.setup.pin_memory,
    )  # fmt: skip
    torch.manual_seed(0)
    model = prepare_model(create_backbone(job.backbone, num_classes=2, taps=(), img_size=job.img_size).model, job.setup)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    model.train()
    started = time.perf_counter()
    for images, labels in loader:
        images, labels = to_device(images, labels, job.setup)
        with autocast(job.setup):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _synchronize(job.setup)
    return time.perf_counter() - started


def measure_epochs(
    source: DatasetSource,
    classes: tuple[str, str],
    img_size: int,
    batch_size: int,
    per_class: int,
    setup: DeviceSetup,
    *,
    backbone: str,
    workers: int,
) -> EpochFigures:
    """(d): task preparation with a cold cache, a warm cache and no cache; the harness's epoch (after the warm
    preparation) and the torchvision loop's epoch."""
    job = EpochJob(source, classes, img_size, batch_size, per_class, setup, backbone, workers)
    with tempfile.TemporaryDirectory(prefix="bench-speed-cache-") as cache:
        cold, _, images = _harness_epoch(job, Path(cache))
        with count_decodes() as decodes:
            warm, epoch, _ = _harness_epoch(job, Path(cache))
    no_cache = _prepare_seconds(source, classes, img_size)
    plain = _torchvision_epoch(job)
    return EpochFigures(images, cold, warm, decodes[0], no_cache, epoch, plain)


def _prepare_seconds(source: DatasetSource, classes: tuple[str, str], img_size: int) -> float:
    started = time.perf_counter()
    prepare_task(source, classes, img_size, cache_dir=None)
    return time.perf_counter() - started


@dataclass(frozen=True)
class MemoryFigures:
    """Peak resident memory of a training process over a memory-mapped decode cache, and of its loader workers."""

    images: int
    img_size: int
    cache_bytes: int
    workers: int
    train_steps: int
    peak_rss_bytes: int  # the training process
    peak_worker_rss_bytes: int  # the largest loader worker (0 without workers)
    seconds: float


def link_images(source: DatasetSource, images: int, root: Path) -> int:
    """An ImageFolder of symbolic links to the first ``images`` training files of ``source``, dealt alternately
    into two classes ``a`` and ``b`` (a binary task of any size the data set can supply); returns how many."""
    paths = source.train.paths or ()
    chosen = list(paths)[:images]
    for split, members in (("train", chosen), ("test", chosen[:2])):
        for index, path in enumerate(members):
            folder = root / split / ("a", "b")[index % 2]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{index:06d}{Path(path).suffix}").symlink_to(Path(path).resolve())
    return len(chosen)


def memory_probe(root: str, cache: str, img_size: int, batch_size: int, workers: int, steps: int, backbone: str,
                  results: Any) -> None:  # fmt: skip
    """Spawned: build (or open) the cache, train ``steps`` steps, then stream every image through the augmenting
    loader once; put (cache bytes, peak RSS of this process, of its largest worker) on ``results``."""
    import resource

    from bench.data import open_source

    setup = DeviceSetup(torch.device("cpu"), None, channels_last=False, pin_memory=False)
    source = open_source(root)
    task = prepare_task(source, ("a", "b"), img_size, cache_dir=Path(cache))
    mean, std = _identity_stats()
    loader = create_loader(
        task.train_images, task.train_labels, create_train_transform(mean, std), batch_size=batch_size, train=True,
        workers=workers, seed=0,
    )  # fmt: skip
    model = create_backbone(backbone, num_classes=2, taps=None, img_size=img_size)
    settings = TrainSettings.from_options({**PAPER_DEFAULTS, "img_size": img_size, "batch_size": batch_size})
    loss_fn = create_method_loss(parse_method("fscl"), [1, 1], settings)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    for index, (images, labels) in enumerate(loader):
        if index < steps:
            train_one_epoch(model, [(images, labels)], loss_fn, optimizer, create_grad_scaler(setup), setup)
    del loader  # ends the persistent workers, so their peak is counted among this process's children
    cache_bytes = sum(f.stat().st_size for f in Path(cache).rglob("*.u8"))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    results.put((cache_bytes, own, children if workers else 0))


def measure_memory(
    source: DatasetSource,
    *,
    images: int,
    img_size: int,
    batch_size: int,
    workers: int,
    steps: int,
    backbone: str,
) -> MemoryFigures:
    """(e): peak RSS of a fresh process that caches ``images`` training images of ``source`` at ``img_size``, trains
    ``steps`` steps of ``fscl`` and streams every cached image through the augmenting loader (Linux ru_maxrss)."""
    import multiprocessing

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-speed-memory-") as scratch:
        count = link_images(source, images, Path(scratch) / "data")
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        child = context.Process(
            target=memory_probe,
            args=(str(Path(scratch) / "data"), str(Path(scratch) / "cache"), img_size, batch_size, workers, steps,
                  backbone, results),
        )  # fmt: skip
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"the memory measurement process failed with exit code {child.exitcode}")
        cache_bytes, own, worker = results.get(timeout=10)
    return MemoryFigures(count, img_size, cache_bytes, workers, steps, own, worker, time.perf_counter() - started)


def render(report: SpeedReport) -> list[str]:
    """The figures as Markdown lines: one table for the step, one for the pipeline, one for epochs."""
    lines = [f"bench speed: {report.backbone}, {report.device}", ""]
    lines += [
        "| img px | batch | (a) minimal step | (b) harness CE | (b) harness CE + fscl | harness / minimal speed "
        "| fscl / CE time |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in report.steps:
        lines.append(
            f"| {s.img_size} | {s.batch_size} | {s.minimal * 1e3:.1f} ms ({s.images_per_second(s.minimal):.0f} img/s) "
            f"| {s.harness_ce * 1e3:.1f} ms ({s.images_per_second(s.harness_ce):.0f} img/s) "
            f"| {s.harness_fscl * 1e3:.1f} ms | {s.harness_over_minimal:.3f} | {s.fscl_over_ce:.3f} |"
        )
    if report.pipelines:
        steps = {s.img_size: s for s in report.steps}
        lines += ["", "| img px | loader workers | (c) pipeline img/s | pipeline / harness CE step img/s |",
                  "|---:|---:|---:|---:|"]  # fmt: skip
        for p in report.pipelines:
            step = steps.get(p.img_size)
            for count, rate in p.images_per_second.items():
                ratio = f"{rate / step.images_per_second(step.harness_ce):.2f}" if step else "-"
                lines.append(f"| {p.img_size} | {count} | {rate:.0f} | {ratio} |")
    if report.epochs:
        lines += ["", "| img px | train images | (d) prepare: cold cache | warm cache (files decoded) | no cache "
                  "| harness epoch | torchvision ImageFolder + PIL epoch | torchvision / harness |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for size, e in report.epochs.items():
            lines.append(
                f"| {size} | {e.images} | {e.cold_cache_prepare:.1f} s | {e.warm_cache_prepare:.2f} s "
                f"({e.warm_cache_decodes}) | {e.no_cache_prepare:.1f} s | {e.harness_epoch:.1f} s "
                f"| {e.torchvision_epoch:.1f} s | {e.torchvision_over_harness:.2f} |"
            )
    if report.memory is not None:
        m = report.memory
        gib = 1024**3
        lines += ["", "| (e) cached images | img px | cache on disk | loader workers | peak RSS, training process "
                  "| peak RSS, largest worker |", "|---:|---:|---:|---:|---:|---:|",
                  f"| {m.images} | {m.img_size} | {m.cache_bytes / gib:.2f} GiB | {m.workers} "
                  f"| {m.peak_rss_bytes / gib:.2f} GiB | {m.peak_worker_rss_bytes / gib:.2f} GiB |"]  # fmt: skip
    return lines


def versions() -> dict[str, str]:
    import platform

    import timm

    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "cpu_threads": str(torch.get_num_threads()), "machine": platform.machine()}  # fmt: skip


def run_speed(
    *,
    backbone: str,
    img_sizes: Sequence[int],
    batch_size: int,
    setup: DeviceSetup,
    workers: Sequence[int],
    steps: int,
    rounds: int,
    source: DatasetSource | None = None,
    classes: tuple[str, str] | None = None,
    per_class: int = 1000,
    epoch_workers: int = 0,
    memory_images: int = 0,
    memory_size: int = 224,
    progress: Progress | None = None,
) -> SpeedReport:
    """Measure (a)-(c) at every image size, (d) when an ImageFolder ``source`` and its ``classes`` are given, and
    (e) with ``memory_images`` > 0 and an ImageFolder ``source``."""
    say = progress or (lambda _: None)
    report = SpeedReport(backbone=backbone, device=setup.description, workers=tuple(workers), versions=versions())
    rng = np.random.default_rng(0)
    for size in img_sizes:
        say(f"(a)+(b) training steps at {size} px")
        report.steps.append(measure_steps(backbone, size, batch_size, setup, steps=steps, rounds=rounds))
        say(f"(c) input pipeline at {size} px")
        images = rng.integers(0, 256, (max(batch_size * 32, 1024), size, size, 3), dtype=np.uint8)
        labels = np.arange(len(images)) % 2
        rates = measure_pipeline(images, labels, batch_size, workers)
        report.pipelines.append(PipelineFigures(size, rates))
        if source is not None and classes is not None and source.train.paths is not None:
            say(f"(d) epochs on {source.name} at {size} px")
            report.epochs[size] = measure_epochs(
                source, classes, size, batch_size, per_class, setup, backbone=backbone, workers=epoch_workers
            )
    if memory_images > 0 and source is not None and source.train.paths is not None:
        say(f"(e) peak memory with {memory_images} cached images at {memory_size} px")
        report.memory = measure_memory(
            source, images=memory_images, img_size=memory_size, batch_size=batch_size, workers=epoch_workers,
            steps=2, backbone=backbone,
        )  # fmt: skip
    return report
