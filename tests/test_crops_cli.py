"""bench crops on the command line: the options reach the writer, a real run prints the summary, a malformed file
gives one line per problem kind and exit 2, a rerun writes nothing, a different command into the same folder is
exit 2, and --help documents every option."""

import json

from test_crops_dataset import camera_trap_set
from typer.testing import CliRunner

from bench import cli

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(cli.app, ["crops", *args])


def test_options_reach_the_writer(tmp_path, monkeypatch):
    import bench.crops.dataset as dataset

    seen = {}

    def fake_write(settings, out, *, workers=None, progress=None):
        seen.update(settings=settings, out=out)
        return dataset.CropSummary()

    monkeypatch.setattr(dataset, "write_crops", fake_write)
    result = invoke("md.json", "--images", str(tmp_path), "--out", str(tmp_path / "out"), "--min-conf", "0.5",
                    "--categories", "animal,person", "--per-image", "top", "--no-square", "--margin", "0",
                    "--min-size", "8", "--test-fraction", "0.3", "--group", "none", "--burst-seconds", "5",
                    "--seed", "7")  # fmt: skip
    assert result.exit_code == 0, result.output
    settings = seen["settings"]
    assert (settings.min_conf, settings.categories, settings.per_image, settings.square, settings.margin) == (
        0.5, ("animal", "person"), "top", False, 0.0,
    )  # fmt: skip
    assert (settings.min_size, settings.test_fraction, settings.group, settings.burst_seconds, settings.seed) == (
        8, 0.3, "none", 5.0, 7,
    )  # fmt: skip
    assert settings.labels is None and seen["out"] == (tmp_path / "out").resolve()


def test_a_real_run_then_a_rerun_then_another_command(tmp_path):
    settings = camera_trap_set(tmp_path)
    common = [settings.detections, "--images", settings.images, "--out", str(tmp_path / "ds"), "--labels",
              settings.labels, "--no-square", "--margin", "0", "--test-fraction", "0.3"]  # fmt: skip
    first = invoke(*common)
    assert first.exit_code == 0, first.output
    assert "detections 12: kept 8, dropped category 1, confidence 1, no label 1, size 1" in first.output
    assert "split by location; crops written now: 8" in first.output
    again = invoke(*common)
    assert again.exit_code == 0 and "crops written now: 0" in again.output
    other = invoke(*common, "--seed", "1")
    assert other.exit_code == 2 and "was made by another bench crops command (seed: 0 there, 1 now)" in other.output


def test_malformed_file_one_line_per_kind_and_exit_2(tmp_path):
    bad = tmp_path / "md.json"
    images = [
        {"file": f"a/{i}.jpg", "detections": [{"category": "4", "conf": 2, "bbox": [0, 0, 1, 1]}]} for i in (1, 2)
    ]
    bad.write_text(json.dumps({"info": {"format_version": "1.1"}, "detection_categories": {"1": "animal"},
                               "images": images}))  # fmt: skip
    result = invoke(str(bad), "--images", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line]
    assert lines == [
        f"error: {bad}: unknown category id: image 'a/1.jpg' (and 1 more): category '4' is not in "
        "detection_categories (1)",
        f"error: {bad}: conf outside 0..1: image 'a/1.jpg' (and 1 more): conf 2",
    ]
    assert not (tmp_path / "out").exists()


def test_bad_option_is_one_line_exit_2(tmp_path):
    result = invoke("md.json", "--images", str(tmp_path), "--out", str(tmp_path / "o"), "--per-image", "best")
    assert result.exit_code == 2 and result.output.strip() == "error: --per-image must be one of all, top, got 'best'"


def test_help_documents_every_option():
    result = runner.invoke(cli.app, ["crops", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for flag in (
        "--images",
        "--out",
        "--labels",
        "--min-conf",
        "--categories",
        "--per-image",
        "--square",
        "--no-square",
        "--margin",
        "--min-size",
        "--test-fraction",
        "--group",
        "--burst-seconds",
        "--seed",
    ):
        assert flag in result.output, flag
