"""Box selection (counted drops) and crop geometry, computed by hand on a 640x480 frame; crop pixels checked
against the displayed frame, also for an EXIF-rotated file."""

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from bench.config import ConfigError
from bench.crops.boxes import BoxRules, CropBox, crop_box, cut, open_displayed, select_boxes
from bench.crops.detections import Detection

FRAME = (640, 480)


@pytest.mark.parametrize(
    ("bbox", "square", "margin", "expected"),
    [
        # pixel box x 160..240, y 120..240 (80 x 120), centre (200, 180)
        ((0.25, 0.25, 0.125, 0.25), False, 0.0, CropBox(160, 120, 80, 120)),  # exactly the box
        ((0.25, 0.25, 0.125, 0.25), True, 0.0, CropBox(140, 120, 120, 120)),  # square of side 120 at the centre
        ((0.25, 0.25, 0.125, 0.25), True, 0.1, CropBox(128, 108, 144, 144)),  # + 12 px on each edge
        ((0.25, 0.25, 0.125, 0.25), False, 0.1, CropBox(152, 108, 96, 144)),  # + 8 px left/right, 12 px up/down
        # top-left corner: pixel box 0..64 x 0..96; square 96 centred at (32, 48) -> x -16..80, clipped to 0..80
        ((0.0, 0.0, 0.1, 0.2), True, 0.0, CropBox(0, 0, 80, 96)),
        # bottom-right corner: pixel box 576..640 x 384..480; square x 560..656 clipped to 560..640
        ((0.9, 0.8, 0.1, 0.2), True, 0.0, CropBox(560, 384, 80, 96)),
        ((0.9, 0.8, 0.1, 0.2), False, 0.5, CropBox(544, 336, 96, 144)),  # margin 32 / 48 px, clipped right, below
    ],
)
def test_crop_box_by_hand(bbox, square, margin, expected):
    assert crop_box(bbox, FRAME, square=square, margin=margin) == expected


def test_crop_box_rejects_a_negative_margin():
    with pytest.raises(ConfigError, match="--margin"):
        crop_box((0.1, 0.1, 0.1, 0.1), FRAME, margin=-0.1)


def box(category="animal", conf=0.9, size=(0.25, 0.25)):
    return Detection(category=category, conf=conf, bbox=(0.1, 0.1, *size))


def test_select_counts_every_drop_by_reason():
    detections = (
        box(conf=0.5),
        box(conf=0.19),  # below 0.2
        box(category="person"),
        box(conf=0.95, size=(0.04, 0.5)),  # 25.6 px wide < 32
        box(conf=0.8, size=(0.05, 0.0667)),  # 32 x 32.0 px: kept
        box(category="vehicle", conf=0.1),  # category is checked first
    )
    dropped = Counter()
    kept = select_boxes(detections, FRAME, BoxRules(), dropped)
    assert [d.conf for d in kept] == [0.8, 0.5]
    assert dropped == Counter(category=2, confidence=1, size=1)


def test_top_keeps_the_most_confident_kept_box_and_counts_the_rest():
    detections = (box(conf=0.5), box(conf=0.7), box(conf=0.95, size=(0.01, 0.01)), box(conf=0.3))
    dropped = Counter()
    kept = select_boxes(detections, FRAME, BoxRules(per_image="top"), dropped)
    assert kept == [box(conf=0.7)]
    assert dropped == Counter(size=1, top=2)


def test_categories_filter_by_name_and_check_against_the_file():
    dropped = Counter()
    rules = BoxRules(categories=("person", "vehicle"), min_size=0)
    kept = select_boxes((box(), box(category="person"), box(category="vehicle")), FRAME, rules, dropped)
    assert [d.category for d in kept] == ["person", "vehicle"] and dropped == Counter(category=1)
    rules.check_categories({"1": "animal", "2": "person", "3": "vehicle"})
    with pytest.raises(ConfigError, match="'vehicle' is not a category of the detections file; its categories: an"):
        rules.check_categories({"1": "animal", "2": "person"})


@pytest.mark.parametrize(
    ("rules", "flag"),
    [({"min_conf": 1.5}, "--min-conf"), ({"per_image": "best"}, "--per-image"), ({"min_size": -1}, "--min-size")],
)
def test_rules_reject_bad_settings(rules, flag):
    with pytest.raises(ConfigError, match=flag):
        BoxRules(**rules)


def displayed_frame() -> np.ndarray:
    """A 640x480 noise frame with a known patch at pixels x 160..240, y 120..240."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    frame[120:240, 160:240] = rng.integers(0, 256, size=(120, 80, 3), dtype=np.uint8)
    return frame


@pytest.mark.parametrize("orientation", [None, 6, 8, 3])
def test_crop_pixels_equal_the_box_region_of_the_displayed_frame(tmp_path, orientation):
    frame = displayed_frame()
    shown = Image.fromarray(frame)
    path = tmp_path / "frame.png"  # lossless, so pixels compare exactly; PNG carries EXIF in an eXIf chunk
    if orientation is None:
        shown.save(path)
    else:
        # the stored pixels are what a camera held sideways writes; the tag says how to turn them for display
        stored = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}
        exif = Image.Exif()
        exif[0x0112] = orientation
        shown.transpose(stored[orientation]).save(path, exif=exif)
        if orientation in (6, 8):
            assert Image.open(path).size == (480, 640)
    image = open_displayed(path)
    assert image.size == FRAME
    region = crop_box((0.25, 0.25, 0.125, 0.25), image.size, square=False, margin=0.0)
    np.testing.assert_array_equal(np.asarray(cut(image, region)), frame[120:240, 160:240])
    squared = crop_box((0.25, 0.25, 0.125, 0.25), image.size, square=True, margin=0.1)
    np.testing.assert_array_equal(np.asarray(cut(image, squared)), frame[108:252, 128:272])
