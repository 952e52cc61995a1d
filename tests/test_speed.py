"""bench speed: the figures it derives, the decode counting behind "a warm cache decodes nothing", and the CLI.

Timings themselves are not asserted (they belong to the benchmark, not to tests); what is derived from them is.
"""

from __future__ import annotations

import json
import math
import queue
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench import cli
from bench.data import decode_split, decode_split_cached, open_source
from bench.device import resolve_device
from bench.speed import (
    EpochFigures,
    SpeedReport,
    StepFigures,
    count_decodes,
    link_images,
    measure_epochs,
    measure_pipeline,
    measure_steps,
    memory_probe,
    render,
)

runner = CliRunner()
CPU = resolve_device("cpu", "off")


def make_folder(root: Path, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", 2)):
        for name in ("deer", "horse"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.jpg")
    return root


def test_step_ratios_by_hand() -> None:
    figures = StepFigures(img_size=32, batch_size=64, minimal=0.20, harness_ce=0.25, harness_fscl=0.275)
    assert figures.harness_over_minimal == pytest.approx(0.8)  # 0.20 / 0.25
    assert figures.fscl_over_ce == pytest.approx(1.1)  # 0.275 / 0.25
    assert figures.images_per_second(0.25) == pytest.approx(256.0)
    epoch = EpochFigures(100, 9.0, 0.1, 0, 8.0, harness_epoch=4.0, torchvision_epoch=6.0)
    assert epoch.torchvision_over_harness == pytest.approx(1.5)
    report = SpeedReport("resnet18", "cpu (fp32)", (0,), steps=[figures], epochs={32: epoch})
    text = "\n".join(render(report))
    assert "| 32 | 64 | 200.0 ms (320 img/s) | 250.0 ms (256 img/s) | 275.0 ms | 0.800 | 1.100 |" in text
    assert "| 32 | 100 | 9.0 s | 0.10 s (0) | 8.0 s | 4.0 s | 6.0 s | 1.50 |" in text
    assert report.to_dict()["epochs"][32]["torchvision_over_harness"] == pytest.approx(1.5)


def test_measure_steps_times_all_three_kinds() -> None:
    figures = measure_steps("test_resnet", 16, 4, CPU, steps=1, rounds=1)
    for seconds in (figures.minimal, figures.harness_ce, figures.harness_fscl):
        assert math.isfinite(seconds) and seconds > 0


def test_measure_pipeline_counts_images_per_worker_setting() -> None:
    images = np.zeros((40, 16, 16, 3), dtype=np.uint8)
    rates = measure_pipeline(images, np.arange(40) % 2, batch_size=8, workers=[0], batches=3)
    assert list(rates) == [0] and rates[0] > 0


def test_count_decodes_sees_a_cold_cache_decode_and_a_warm_one_not(tmp_path: Path) -> None:
    split = open_source(make_folder(tmp_path / "data")).train
    with count_decodes() as fresh:
        decode_split(split, ["deer", "horse"], 8, threads=1)
    assert fresh[0] == 12
    with count_decodes() as cold:
        decode_split_cached(split, ["deer", "horse"], 8, tmp_path / "cache", threads=1)
    with count_decodes() as warm:
        decode_split_cached(split, ["deer", "horse"], 8, tmp_path / "cache", threads=1)
    assert (cold[0], warm[0]) == (12, 0)


def test_measure_epochs_on_a_folder(tmp_path: Path) -> None:
    source = open_source(make_folder(tmp_path / "data"))
    figures = measure_epochs(source, ("deer", "horse"), 16, 4, 3, CPU, backbone="test_resnet", workers=0)
    assert figures.images == 6 and figures.warm_cache_decodes == 0
    assert min(figures.cold_cache_prepare, figures.harness_epoch, figures.torchvision_epoch) > 0


def test_memory_measurement_caches_links_trains_and_reads_its_peak(tmp_path: Path) -> None:
    """The body of the spawned process of measure_memory, run in this process (spawning costs a torch import)."""
    source = open_source(make_folder(tmp_path / "data"))
    assert link_images(source, 8, tmp_path / "links") == 8
    assert sorted(p.name for p in (tmp_path / "links" / "train").iterdir()) == ["a", "b"]
    assert all(p.is_symlink() for p in (tmp_path / "links" / "train" / "a").iterdir())
    results: queue.Queue = queue.Queue()
    memory_probe(str(tmp_path / "links"), str(tmp_path / "cache"), 16, 4, 0, 1, "test_resnet", results)
    cache_bytes, own, workers = results.get_nowait()
    assert cache_bytes == (8 + 2) * 16 * 16 * 3  # 8 training and 2 test images of 16 x 16 x 3 bytes
    assert own > 50 * 2**20 and workers == 0


def test_speed_command_prints_and_writes_json(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    out = tmp_path / "speed.json"
    args = ["speed", "--backbone", "test_resnet", "--img-size", "16", "--batch-size", "4", "--steps", "1",
            "--rounds", "1", "--workers", "0", "--data", str(data), "--classes", "deer", "horse",
            "--per-class", "3", "--epoch-workers", "0", "--json", str(out)]  # fmt: skip
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert "harness / minimal speed" in result.output and "torchvision / harness" in result.output
    record = json.loads(out.read_text())
    assert record["backbone"] == "test_resnet" and record["epochs"]["16"]["warm_cache_decodes"] == 0
    assert [s["img_size"] for s in record["steps"]] == [16]
    assert record["memory"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--img-size", "big"], "comma-separated whole numbers"),
        (["--workers", "-1"], "at least 0"),
        (["--backbone", "resnet_nonexistent"], "resnet_nonexistent"),
        (["--data", "digits"], "held in memory"),
    ],
)
def test_speed_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(cli.app, ["speed", "--steps", "1", "--rounds", "1", *args])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
