"""``bench speed``: where the time of a training run goes, measured side by side in one process.

(a) a minimal hand-written training step (plain timm model, cross-entropy, Adam) on a batch already in memory;
(b) the harness's own step (``train_one_epoch`` on the tapped backbone with the method loss) on the same batch,
    for ``ce`` and for ``fscl`` (CE + the feature-similarity loss on the tapped stages);
(c) the input pipeline alone: uint8 images -> augmented, normalised batches, per loader worker count;
(d) with an ImageFolder data set: one epoch of the harness (task preparation included) with a cold decode cache,
    a warm one, and without the cache, against a plain torchvision ImageFolder + PIL + transforms loop.

Steps (a) and (b) are timed one step at a time, the three kinds interleaved, and the ratios are medians of the
per-step paired ratios with a 95% interval, so drift of the machine's speed hits all kinds alike. Everything here
measures; nothing in it changes how ``bench run`` trains.
"""

from bench.speed.epochs import EpochFigures, EpochJob, PilFolder, count_decodes, measure_epochs
from bench.speed.memory import MemoryFigures, link_images, measure_memory, memory_probe
from bench.speed.pipeline import PipelineFigures, measure_pipeline
from bench.speed.report import Progress, SpeedReport, render, run_speed, versions
from bench.speed.steps import StepFigures, measure_steps, median_interval, summarize_steps

__all__ = [
    "EpochFigures",
    "EpochJob",
    "MemoryFigures",
    "PilFolder",
    "PipelineFigures",
    "Progress",
    "SpeedReport",
    "StepFigures",
    "count_decodes",
    "link_images",
    "measure_epochs",
    "measure_memory",
    "measure_pipeline",
    "measure_steps",
    "median_interval",
    "memory_probe",
    "render",
    "run_speed",
    "summarize_steps",
    "versions",
]
