"""bench speed: the figures it derives, the decode counting behind "a warm cache decodes nothing", and the CLI.

Timings themselves are not asserted (they belong to the benchmark, not to tests); what is derived from them is.
"""

from __future__ import annotations

import json
import math
import mmap
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
    count_decodes,
    link_images,
    measure_epochs,
    measure_pipeline,
    measure_steps,
    median_interval,
    memory_probe,
    render,
    summarize_steps,
)
from bench.speed.memory import PeakSampler, resident_parts

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


def test_step_figures_are_medians_of_paired_per_step_ratios_by_hand() -> None:
    times = {
        "minimal": [0.20, 0.40, 0.30],
        "ce": [0.25, 0.40, 0.20],  # per-step speed minimal / ce: 0.8, 1.0, 1.5 -> median 1.0
        "fscl": [0.275, 0.60, 0.22],  # per-step time fscl / ce: 1.1, 1.5, 1.1 -> median 1.1
    }
    figures = summarize_steps(32, 64, times)
    assert (figures.minimal, figures.harness_ce, figures.harness_fscl) == (0.30, 0.25, 0.275)  # per-kind medians
    assert figures.harness_over_minimal == pytest.approx(1.0)  # not 0.30 / 0.25: ratios are paired step by step
    assert figures.fscl_over_ce == pytest.approx(1.1)
    assert figures.steps == 3 and math.isnan(figures.fscl_over_ce_interval[0])  # 3 steps: too few for an interval
    assert figures.images_per_second(0.25) == pytest.approx(256.0)
    epoch = EpochFigures(32, 1, 100, 9.0, 0.1, 0, 8.0, harness_epoch=4.0, torchvision_epoch=6.0)
    assert epoch.torchvision_over_harness == pytest.approx(1.5)
    report = SpeedReport("resnet18", "cpu (fp32)", (0,), steps=[figures], epochs=[epoch])
    text = "\n".join(render(report))
    assert "| 32 | 64 | 3 | 300.0 ms (213 img/s) | 250.0 ms (256 img/s) | 275.0 ms | 1.000 [-] | 1.100 [-] |" in text
    assert "| 32 | 1 | 100 | 9.0 s | 0.10 s (0) | 8.0 s | 4.0 s | 6.0 s | 1.50 |" in text
    assert report.to_dict()["epochs"][0]["torchvision_over_harness"] == pytest.approx(1.5)
    assert report.to_dict()["steps"][0]["fscl_over_ce"] == pytest.approx(1.1)
    rounds = EpochFigures(32, 0, 100, 9.0, 0.1, 0, 8.0, 4.0, 5.0, (4.0, 5.0, 2.0), (5.0, 5.0, 3.0))
    assert rounds.round_ratios == pytest.approx((1.25, 1.0, 1.5))  # paired per round, median 1.25, not 5.0 / 4.0
    assert rounds.torchvision_over_harness == pytest.approx(1.25)
    assert "| 4.0 s | 5.0 s | 1.25 (1.00-1.50) |" in "\n".join(render(SpeedReport("r", "cpu", (0,), epochs=[rounds])))


def test_median_interval_is_the_binomial_order_statistics_by_hand() -> None:
    # n = 10: P(B <= 1) = 11/1024 = 0.011 <= 0.025 < P(B <= 2) = 56/1024 = 0.055, so j = 2: [x_(2), x_(9)]
    assert median_interval([float(v) for v in (7, 3, 10, 1, 5, 2, 9, 4, 8, 6)]) == (2.0, 9.0)
    # n = 40: P(B <= 13) = 0.019 <= 0.025 < P(B <= 14) = 0.040, so j = 14: [x_(14), x_(27)]
    assert median_interval([float(v) for v in range(1, 41)]) == (14.0, 27.0)
    assert all(math.isnan(b) for b in median_interval([1.0, 2.0, 3.0, 4.0, 5.0]))  # P(B <= 0) = 1/32 > 0.025


def test_measure_steps_times_all_three_kinds() -> None:
    figures = measure_steps("test_resnet", 16, 4, CPU, steps=2, warmup=1)
    for seconds in (figures.minimal, figures.harness_ce, figures.harness_fscl):
        assert math.isfinite(seconds) and seconds > 0
    assert figures.steps == 2 and figures.harness_over_minimal > 0 and figures.fscl_over_ce > 0


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
    figures = measure_epochs(source, ("deer", "horse"), 16, 4, 3, CPU, backbone="test_resnet", workers=0, rounds=3)
    assert figures.images == 6 and figures.warm_cache_decodes == 0  # over all three warm preparations
    assert len(figures.harness_rounds) == len(figures.torchvision_rounds) == 3
    assert figures.harness_epoch == sorted(figures.harness_rounds)[1]  # the median round
    assert figures.torchvision_epoch == sorted(figures.torchvision_rounds)[1]
    assert min(figures.cold_cache_prepare, figures.harness_epoch, figures.torchvision_epoch) > 0


def test_memory_measurement_caches_links_trains_and_reads_its_peak(tmp_path: Path) -> None:
    """The body of the spawned process of measure_memory, run in this process (spawning costs a torch import)."""
    source = open_source(make_folder(tmp_path / "data"))
    assert link_images(source, 8, tmp_path / "links") == 8
    assert sorted(p.name for p in (tmp_path / "links" / "train").iterdir()) == ["a", "b"]
    assert all(p.is_symlink() for p in (tmp_path / "links" / "train" / "a").iterdir())
    results: queue.Queue = queue.Queue()
    memory_probe(str(tmp_path / "links"), str(tmp_path / "cache"), 16, 4, 0, 1, "test_resnet", results)
    cache_bytes, own, workers, anon, file, worker_anon = results.get_nowait()
    assert cache_bytes == (8 + 2) * 16 * 16 * 3  # 8 training and 2 test images of 16 x 16 x 3 bytes
    assert own > 50 * 2**20 and workers == 0 and worker_anon == 0
    if resident_parts():  # Linux: the sampled parts of the resident memory are there and below the peak total
        assert 50 * 2**20 < anon <= own and 0 < file <= own


@pytest.mark.skipif(not resident_parts(), reason="needs Linux /proc/self/status")
def test_peak_sampler_tells_private_memory_from_a_mapped_file(tmp_path: Path) -> None:
    """Each part is measured against a reading taken just before: the suite's own memory moves between tests."""
    size = 64 * 2**20
    (tmp_path / "cache.u8").write_bytes(bytes(size))
    with PeakSampler(interval=0.001) as sampler:
        before = resident_parts()
        mapped = np.memmap(tmp_path / "cache.u8", dtype=np.uint8, mode="r")
        assert int(mapped.sum()) == 0  # touches every page of the mapping: file-backed, not private
        sampler.sample()  # while it is held: the thread may not get the GIL in time
        del mapped
    assert sampler.file - before["file"] > 0.9 * size
    assert sampler.anon - before["anon"] < 0.5 * size
    with PeakSampler(interval=0.001) as sampler:
        before = resident_parts()
        # A fresh anonymous mapping: a numpy array could reuse freed heap pages that are already resident.
        with mmap.mmap(-1, size) as region:
            np.frombuffer(region, dtype=np.uint8)[:] = 1  # written pages: anonymous
            sampler.sample()
    assert sampler.anon - before["anon"] > 0.9 * size


def test_speed_command_prints_and_writes_json(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    out = tmp_path / "speed.json"
    args = ["speed", "--backbone", "test_resnet", "--img-size", "16", "--batch-size", "4", "--steps", "1",
            "--workers", "0", "--data", str(data), "--classes", "deer", "horse",
            "--per-class", "3", "--epoch-workers", "0,1", "--epoch-rounds", "1", "--json", str(out)]  # fmt: skip
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert "harness / minimal speed" in result.output and "torchvision / harness" in result.output
    record = json.loads(out.read_text())
    assert record["backbone"] == "test_resnet"
    assert [(e["img_size"], e["workers"], e["warm_cache_decodes"]) for e in record["epochs"]] == [
        (16, 0, 0),
        (16, 1, 0),
    ]
    assert [s["img_size"] for s in record["steps"]] == [16]
    assert record["memory"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--img-size", "big"], "comma-separated whole numbers"),
        (["--workers", "-1"], "at least 0"),
        (["--epoch-workers", "one"], "comma-separated whole numbers"),
        (["--backbone", "resnet_nonexistent"], "resnet_nonexistent"),
        (["--data", "digits"], "held in memory"),
    ],
)
def test_speed_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(cli.app, ["speed", "--steps", "1", *args])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
