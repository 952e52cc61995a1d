"""MegaDetector batch-output reading: a good file, a failure, an empty list, and each kind of malformed file."""

import copy
import json

import pytest

from bench.crops.detections import DetectionsFormatError, parse_detections, read_detections
from bench.data import DataError

GOOD = {
    "info": {"format_version": "1.4", "detector": "md_v5a.0.0.pt"},
    "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
    "images": [
        {
            "file": "deer/cam1/a.jpg",
            "max_detection_conf": 0.9,
            "detections": [
                {"category": "1", "conf": 0.9, "bbox": [0.1, 0.2, 0.3, 0.4]},
                {"category": "2", "conf": 0.15, "bbox": [0.5, 0.5, 0.5, 0.5]},
            ],
        },
        {"file": "deer/cam1/b.jpg", "detections": []},
        {"file": "fox/cam2/c.jpg", "failure": "Failure image access", "detections": None},
    ],
}


def test_good_file_reads_boxes_names_failures_and_empty_lists(tmp_path):
    path = tmp_path / "md.json"
    path.write_text(json.dumps(GOOD))
    parsed = read_detections(path)
    assert parsed.format_version == "1.4"
    assert [image.file for image in parsed.images] == ["deer/cam1/a.jpg", "deer/cam1/b.jpg", "fox/cam2/c.jpg"]
    first, empty, failed = parsed.images
    assert [(d.category, d.conf, d.bbox) for d in first.detections] == [
        ("animal", 0.9, (0.1, 0.2, 0.3, 0.4)),
        ("person", 0.15, (0.5, 0.5, 0.5, 0.5)),
    ]
    assert empty.detections == () and empty.failure is None
    assert failed.detections is None and failed.failure == "Failure image access"
    assert parsed.failures == 1 and parsed.detections == 2


def broken(change):
    table = copy.deepcopy(GOOD)
    change(table)
    return table


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda t: t["info"].update(format_version="2.0"),
            "unsupported format_version: the file: format_version '2.0'",
        ),
        (lambda t: t.pop("info"), "no info.format_version"),
        (lambda t: t.pop("detection_categories"), "bad detection_categories"),
        (lambda t: t.pop("images"), "no images list"),
        (
            lambda t: t["images"][0]["detections"][0].update(bbox=[0.8, 0.2, 0.3, 0.4]),
            "bbox outside 0..1: image 'deer/cam1/a.jpg': bbox [0.8, 0.2, 0.3, 0.4]",
        ),
        (
            lambda t: t["images"][0]["detections"][0].update(bbox=[-0.1, 0.2, 0.3, 0.4]),
            "bbox outside 0..1: image 'deer/cam1/a.jpg'",
        ),
        (
            lambda t: t["images"][0]["detections"][0].update(bbox=[0.1, 0.2, 0.3]),
            "bbox is not 4 numbers: image 'deer/cam1/a.jpg'",
        ),
        (
            lambda t: t["images"][0]["detections"][1].update(category="7"),
            "unknown category id: image 'deer/cam1/a.jpg': category '7' is not in detection_categories (1, 2, 3)",
        ),
        (lambda t: t["images"][0]["detections"][0].update(conf=1.5), "conf outside 0..1: image 'deer/cam1/a.jpg'"),
        (
            lambda t: t["images"][0]["detections"][0].pop("conf"),
            "detection without category, conf and bbox: image 'deer/cam1/a.jpg': missing conf",
        ),
        (lambda t: t["images"][1].pop("detections"), "image without 'detections': image 'deer/cam1/b.jpg'"),
        (lambda t: t["images"][1].pop("file"), "image without 'file': image '#1'"),
        (lambda t: t["images"][1].update(file="../x.jpg"), "'file' not relative to the image root"),
        (lambda t: t["images"][1].update(file="deer/cam1/a.jpg"), "file listed twice: image 'deer/cam1/a.jpg'"),
        (lambda t: t["images"][2].update(detections=[]), "failure with detections: image 'fox/cam2/c.jpg'"),
    ],
)
def test_each_malformation_gives_one_line_naming_the_image(change, expected):
    with pytest.raises(DetectionsFormatError) as caught:
        parse_detections(broken(change), label="md.json")
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"md.json: {expected}")
    assert "\n" not in str(caught.value)


def test_one_line_per_kind_counts_the_further_images():
    def change(table):
        for image in table["images"][:2]:
            image["detections"] = [{"category": "9", "conf": 0.5, "bbox": [0.1, 0.1, 0.1, 0.1]}] * 2
        table["info"]["format_version"] = "0.9"

    with pytest.raises(DetectionsFormatError) as caught:
        parse_detections(broken(change), label="md.json")
    assert caught.value.problems == (
        "md.json: unsupported format_version: the file: format_version '0.9'; bench reads 1.x",
        "md.json: unknown category id: image 'deer/cam1/a.jpg' (and 3 more): category '9' is not in "
        "detection_categories (1, 2, 3)",
    )


def test_versions_and_edge_rounding_that_are_accepted():
    table = broken(lambda t: t["info"].update(format_version="1.0"))
    table["images"][0]["detections"][0]["bbox"] = [0.7, 0.0, 0.3004, 1.0]  # x + w passes 1 by rounding only
    assert parse_detections(table).images[0].detections[0].bbox == (0.7, 0.0, 0.3004, 1.0)


def test_not_json_and_missing_file_are_data_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DetectionsFormatError, match="not valid JSON"):
        read_detections(bad)
    with pytest.raises(DataError, match="cannot read detections file"):
        read_detections(tmp_path / "missing.json")
    with pytest.raises(DetectionsFormatError, match="expected a JSON object"):
        parse_detections([1, 2])
