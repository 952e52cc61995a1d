"""Integration: CIFAR-10 photographs (the shared JPEG copy) pasted into larger frames in bursts, their boxes written
as a MegaDetector file, cut by bench crops, then a one-epoch grid and a report on the crops. Skipped when the shared
copy is absent."""

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench import cli

SHARED_CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
FRAME = (160, 120)
runner = CliRunner()


def camera_trap_frames(root: Path, per_class: int = 24) -> tuple[dict, dict[str, np.ndarray]]:
    """Frames root/<class>/cam<k>/<i>.jpg, bursts of three frames 5 s apart (EXIF times), one CIFAR image pasted
    at a seeded place in each; returns the detections file's table and each frame's pasted image."""
    rng = np.random.default_rng(0)
    images, pasted = [], {}
    start = datetime(2024, 5, 1, 6, 0, 0)
    for label in ("deer", "horse"):
        for i in range(per_class):
            photo = np.asarray(Image.open(SHARED_CIFAR10 / "train" / label / f"{i:04d}.jpg").convert("RGB"))
            frame = rng.integers(0, 256, size=(FRAME[1], FRAME[0], 3), dtype=np.uint8)
            x, y = int(rng.integers(0, FRAME[0] - 32)), int(rng.integers(0, FRAME[1] - 32))
            frame[y : y + 32, x : x + 32] = photo
            file = f"{label}/cam{i // 6}/{i:03d}.jpg"
            exif = Image.Exif()
            when = start + timedelta(minutes=10 * (i // 3), seconds=5 * (i % 3))
            exif.get_ifd(0x8769)[0x9003] = when.strftime("%Y:%m:%d %H:%M:%S")
            (root / file).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(root / file, quality=95, exif=exif)
            bbox = [x / FRAME[0], y / FRAME[1], 32 / FRAME[0], 32 / FRAME[1]]
            low = {"category": "1", "conf": 0.05, "bbox": [0.0, 0.0, 0.5, 0.5]}
            images.append({"file": file, "detections": [{"category": "1", "conf": 0.9, "bbox": bbox}, low]})
            pasted[file] = photo
    table = {"info": {"format_version": "1.4"}, "detection_categories": {"1": "animal"}, "images": images}
    return table, pasted


@pytest.mark.skipif(not SHARED_CIFAR10.is_dir(), reason="uses the shared CIFAR-10 JPEG copy, absent here")
def test_cifar_frames_to_crops_to_a_grid_and_a_report(tmp_path):
    table, pasted = camera_trap_frames(tmp_path / "photos")
    detections = tmp_path / "md.json"
    detections.write_text(json.dumps(table))
    out = tmp_path / "crops"
    made = runner.invoke(cli.app, ["crops", str(detections), "--images", str(tmp_path / "photos"), "--out", str(out),
                                   "--no-square", "--margin", "0", "--min-size", "16",
                                   "--test-fraction", "0.25"])  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "detections 96: kept 48, dropped confidence 48" in made.output and "split by sequence" in made.output
    rows = (out / "crops.csv").read_text().splitlines()[1:]
    assert len(rows) == 48
    bursts: dict[str, set[str]] = {}
    for row in rows:
        crop, source, label, split, group = row.split(",")[:5]
        bursts.setdefault(group, set()).add(split)
        cut = np.asarray(Image.open(out / crop).convert("RGB"), dtype=np.int16)
        assert cut.shape == (32, 32, 3) and np.abs(cut - pasted[source]).mean() < 12
    assert len(bursts) == 16 and all(len(sides) == 1 for sides in bursts.values())
    runs = tmp_path / "runs"
    trained = runner.invoke(cli.app, ["run", "--data", str(out), "--task", "crops", "--majority-count", "12",
                                      "--img-size", "32", "--epochs", "1", "--seeds", "1", "--ratios", "0.5",
                                      "--methods", "ce", "--val-count", "0", "--out", str(runs)])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    record = json.loads(next(runs.glob("crops__*__ce__r0.5__s0/result.json")).read_text())
    assert record["classes"] == ["deer", "horse"] and record["train_counts"] == {"deer": 12, "horse": 6}
    reported = runner.invoke(cli.app, ["report", str(runs)])
    assert reported.exit_code == 0, reported.output
    assert (runs / "report.md").is_file() and "crops" in (runs / "leaderboard.md").read_text()
