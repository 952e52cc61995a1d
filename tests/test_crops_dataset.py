"""bench crops' writer on a small camera-trap set built here: counts by reason, files match crops.csv, no location
on both sides, crop pixels, rerun writes nothing, another command refused, missing image refused."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from bench.config import load_config_file
from bench.crops.dataset import CropSettings, render_summary, write_crops
from bench.data import DataError

BOX = [0.25, 0.25, 0.125, 0.25]  # pixels x 160..240, y 120..240 of a 640x480 frame


def frame(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((480, 640, 3), 90, np.uint8)
    image[120:240, 160:240] = (
        rng.integers(0, 256, size=(1, 1, 3), dtype=np.uint8) + np.arange(80, dtype=np.uint8)[None, :, None]
    )  # a smooth ramp, so JPEG keeps it close
    return image


def animal(conf=0.9, bbox=BOX, category="1"):
    return {"category": category, "conf": conf, "bbox": list(bbox)}


def camera_trap_set(tmp_path):
    root = tmp_path / "photos"
    rows = ["file,label,location,datetime"]
    images = []
    layout = [  # file, label, location, detections
        ("cam1/a.png", "deer", "loc1", [animal(), animal(0.1), animal(0.8, category="2")]),
        ("cam1/b.png", "deer", "loc1", [animal(0.8)]),
        ("cam2/c.png", "deer", "loc2", [animal(0.7)]),
        ("cam3/d.png", "deer", "loc3", [animal(0.7)]),
        ("cam4/e.png", "fox", "loc4", [animal(0.6), animal(0.9, bbox=[0.5, 0.5, 0.01, 0.01])]),
        ("cam5/f.png", "fox", "loc5", [animal(0.6)]),
        ("cam6/g.png", "fox", "loc6", [animal(0.6)]),
        ("cam7/h.png", "lynx", "loc7", [animal(0.5)]),
        ("cam7/empty.png", "lynx", "loc7", []),
        ("cam9/nolabel.png", None, None, [animal(0.9)]),
    ]
    for index, (file, label, location, detections) in enumerate(layout):
        path = root / file
        path.parent.mkdir(parents=True, exist_ok=True)
        shown = Image.fromarray(frame(index))
        if file == "cam6/g.png":  # stored turned, displayed upright by its EXIF orientation
            exif = Image.Exif()
            exif[0x0112] = 6
            shown.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
        else:
            shown.save(path)
        images.append({"file": file, "detections": detections})
        if label:
            rows.append(f"{file},{label},{location},2024:05:0{index % 9 + 1} 06:30:00")
    images.append({"file": "cam8/fail.png", "failure": "Failure image access", "detections": None})
    detections = tmp_path / "md.json"
    categories = {"1": "animal", "2": "person", "3": "vehicle"}
    detections.write_text(json.dumps({"info": {"format_version": "1.4"}, "detection_categories": categories,
                                      "images": images}))  # fmt: skip
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return CropSettings(detections=str(detections), images=str(root), labels=str(labels), square=False, margin=0.0,
                        test_fraction=0.3)  # fmt: skip


def read_rows(out):
    with (out / "crops.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_counts_files_splits_and_pixels(tmp_path):
    settings = camera_trap_set(tmp_path)
    out = tmp_path / "dataset"
    summary = write_crops(settings, out, workers=2)
    assert (summary.images, summary.failures, summary.detections, summary.kept) == (11, 1, 12, 8)
    assert summary.dropped == {"confidence": 1, "category": 1, "size": 1, "no label": 1}
    assert summary.kept + sum(summary.dropped.values()) == summary.detections
    assert summary.unlabelled_images == 1 and summary.group == "location" and summary.written == 8
    rows = read_rows(out)
    on_disk = sorted(str(p.relative_to(out)) for p in out.glob("*/*/*.jpg"))
    assert sorted(row["crop"] for row in rows) == on_disk and len(on_disk) == 8
    for row in rows:
        assert row["crop"].startswith(f"{row['split']}/{row['label']}/")
        assert (row["x"], row["y"], row["width"], row["height"]) == ("160", "120", "80", "120")
    sides = {}
    for row in rows:
        sides.setdefault(row["group"], set()).add(row["split"])
    assert all(len(side) == 1 for side in sides.values())
    lynx = [row for row in rows if row["label"] == "lynx"]
    assert [row["split"] for row in lynx] == ["train"]
    assert any("class 'lynx': all 1 crops sit in one location ('loc7')" in note for note in summary.notes)
    counts = {label: dict(c) for label, c in summary.per_class.items()}
    assert sum(sum(c.values()) for c in counts.values()) == 8 and counts["lynx"] == {"train": 1}
    for index, file in enumerate(["cam1/a.png", "cam6/g.png"]):
        (row,) = [r for r in rows if r["source"] == file]
        crop = np.asarray(Image.open(out / row["crop"]), dtype=np.int16)
        expected = frame([0, 6][index])[120:240, 160:240].astype(np.int16)
        assert crop.shape == expected.shape and np.abs(crop - expected).mean() < 3
    toml = load_config_file(out / "bench.toml", data_root=out)
    assert "# class lynx: 1 train, 0 test crops" in (out / "bench.toml").read_text()
    assert "lynx" not in sum(toml.tasks.values(), ())
    lines = render_summary(summary)
    assert lines[1] == "detections 12: kept 8, dropped category 1, confidence 1, no label 1, size 1"


def test_rerun_writes_nothing_and_another_command_is_refused(tmp_path):
    settings = camera_trap_set(tmp_path)
    out = tmp_path / "dataset"
    write_crops(settings, out, workers=1)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = write_crops(settings, out, workers=1)
    assert again.written == 0 and {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    changed = CropSettings(**{**settings.__dict__, "min_conf": 0.3})
    with pytest.raises(DataError, match=r"was made by another bench crops command \(min-conf: 0.2 there, 0.3 now\)"):
        write_crops(changed, out)
    labels = tmp_path / "labels.csv"
    labels.write_text(labels.read_text().replace(",fox,", ",deer,"))
    with pytest.raises(DataError, match="was made from another labels file"):
        write_crops(settings, out)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="exists and was not made by bench crops"):
        write_crops(settings, tmp_path / "other")


def test_a_missing_image_is_one_line_and_writes_nothing(tmp_path):
    settings = camera_trap_set(tmp_path)
    (tmp_path / "photos" / "cam2" / "c.png").unlink()
    with pytest.raises(DataError, match=r"image 'cam2/c.png' of the detections file not found under") as caught:
        write_crops(settings, tmp_path / "dataset")
    assert "\n" not in str(caught.value) and not (tmp_path / "dataset").exists()


def test_sequence_groups_from_csv_times_and_none_notes_the_leak(tmp_path):
    settings = camera_trap_set(tmp_path)
    summary = write_crops(CropSettings(**{**settings.__dict__, "group": "sequence"}), tmp_path / "seq")
    groups = {row["source"]: row["group"] for row in read_rows(tmp_path / "seq")}
    assert groups["cam1/a.png"] == "cam1@2024-05-01T06:30:00" and summary.group == "sequence"
    none = write_crops(CropSettings(**{**settings.__dict__, "group": "none"}), tmp_path / "none")
    assert any("can land on both sides" in note for note in none.notes)


def test_the_csv_sequence_column_names_the_groups(tmp_path):
    settings = camera_trap_set(tmp_path)
    labels = tmp_path / "labels.csv"
    lines = labels.read_text().splitlines()
    rows = ["file,label,sequence"] + [f"{line.split(',')[0]},{line.split(',')[1]},s{i % 3}" for i, line in
                                       enumerate(lines[1:])]  # fmt: skip
    labels.write_text("\n".join(rows) + "\n")
    summary = write_crops(settings, tmp_path / "seq")
    assert summary.group == "sequence"
    groups = {row["source"]: row["group"] for row in read_rows(tmp_path / "seq")}
    assert groups["cam1/a.png"] == "sequence s0" and groups["cam1/b.png"] == "sequence s1"
