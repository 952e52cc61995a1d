"""RandAugment strengths (bench.data.augment) against torchvision's RandAugment, op by op (CPU, no training)."""

from __future__ import annotations

from collections.abc import Iterator

import albumentations as A
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode, RandAugment
from torchvision.transforms.autoaugment import _apply_op  # what RandAugment.forward applies, op by op

from bench.data import DataError, create_randaugment, create_train_transform, seed_transform
from bench.data.augment import SignedBlend, SignedShift, magnitude_bin

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
OP_NAMES = list(RandAugment()._augmentation_space(31, (32, 32)))  # torchvision's 14 ops, in its order


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """torchvision's ops on 32 x 32 images run ~100 x faster on one thread than on two busy ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Rotate at magnitude 30 is 30 degrees, whose sine is exactly 1/2: on an odd-sized image many pixels' sources lie
# exactly halfway between two, and nearest neighbour may take either. OpenCV 5.0 rounds them as torchvision does,
# OpenCV 5.1 does not (17 of 33 x 33 pixels). So up to 5% of the pixels may differ there; every other magnitude and
# size must match exactly (a wrong angle, sign or interpolation changes hundreds of pixels).


def sample_images(size: int) -> list[np.ndarray]:
    """A full-range noise image and a low-contrast one (so auto-contrast and equalize have work to do)."""
    rng = np.random.default_rng(size)
    noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    dull = rng.integers(40, 210, (size, size, 3), dtype=np.uint8)
    dull[..., 2] //= 2
    return [noise, dull]


def torchvision_op(image: np.ndarray, name: str, magnitude: int, sign: int) -> np.ndarray:
    """torchvision RandAugment's op `name` at bin `magnitude` of 31 with the given sign, on uint8 [H, W, 3]."""
    strengths, signed = RandAugment()._augmentation_space(31, image.shape[:2])[name]
    strength = float(strengths[magnitude]) * (sign if signed else 1) if strengths.ndim > 0 else 0.0
    tensor = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    out = _apply_op(tensor, name, strength, interpolation=InterpolationMode.NEAREST, fill=None)
    return out.permute(1, 2, 0).numpy()


def bench_op(op: A.BasicTransform | A.BaseCompose, image: np.ndarray, sign: int) -> np.ndarray:
    """One op of the fixed RandAugment with its sign chosen instead of drawn."""
    if isinstance(op, SignedBlend):
        return op.apply(image, factor=1.0 + sign * op.strength)
    if isinstance(op, SignedShift):
        return op.apply(image, sign=float(sign))
    if isinstance(op, A.OneOf):  # rotate: +angle first, -angle second
        return op.transforms[0 if sign > 0 else 1](image=image)["image"]
    return op(image=image)["image"]


def fixed_ops(magnitude: int) -> list[A.BasicTransform | A.BaseCompose]:
    return list(create_randaugment(num_ops=2, magnitude=magnitude, strength="fixed").transforms)


@pytest.mark.parametrize("index", range(14), ids=OP_NAMES)
def test_fixed_op_equals_torchvision_at_every_magnitude(index: int) -> None:
    name = OP_NAMES[index]
    for size in (32, 33):
        for magnitude in range(31):
            op = fixed_ops(magnitude)[index]
            for image in sample_images(size):
                for sign in (1, -1):
                    ours, theirs = bench_op(op, image, sign), torchvision_op(image, name, magnitude, sign)
                    assert ours.shape == theirs.shape and ours.dtype == np.uint8
                    unexplained = (ours != theirs).any(axis=-1) & ~shear_ties(name, magnitude, size)
                    allowed = size * size // 20 if name == "Rotate" and magnitude == 30 else 0  # see the note above
                    assert unexplained.sum() <= allowed, (name, size, magnitude, sign, int(unexplained.sum()))


def shear_ties(name: str, magnitude: int, size: int) -> np.ndarray:
    """bool [size, size]: pixels whose nearest source lies exactly halfway between two, which torchvision's float32
    grid may round either way: for ShearX the rows y with s (y + 1/2) at a half-integer, for ShearY the columns."""
    ties = np.zeros((size, size), dtype=bool)
    if name in {"ShearX", "ShearY"}:
        offsets = magnitude_bin(0.3, magnitude) * (np.arange(size) + 0.5)
        tied = np.abs(offsets % 1 - 0.5) < 1e-5
        if name == "ShearX":
            ties[tied, :] = True
        else:
            ties[:, tied] = True
    return ties


def test_blends_are_torchvision_multiplicative_blends_by_hand() -> None:
    """Brightness 1.27 on grey levels 0, 100, 200, 250: 0, 127, 254, 255 (factor x value in float32, truncated)."""
    image = np.array([0, 100, 200, 250], dtype=np.uint8).reshape(2, 2, 1).repeat(3, axis=2)
    brighter = SignedBlend("brightness", 0.27).apply(image, factor=1.27)
    assert brighter[..., 0].ravel().tolist() == [0, 127, 254, 255]
    flat = np.full((4, 4, 3), 80, dtype=np.uint8)
    assert np.array_equal(SignedBlend("contrast", 0.27).apply(flat, factor=1.27), flat)  # the mean is 80 everywhere
    grey = np.full((4, 4, 3), 80, dtype=np.uint8)  # its grayscale: int(0.9999 x 80) = 79; 0.1 x 80 + 0.9 x 79 = 79.1
    assert np.array_equal(SignedBlend("color", 0.9).apply(grey, factor=0.1), grey - 1)


def test_fixed_strength_is_plus_or_minus_its_bin() -> None:
    """Rotate at magnitude 9 turns by exactly +9 or -9 degrees (each drawn), never by anything in between."""
    image = sample_images(32)[0]
    tensor = torch.from_numpy(image).permute(2, 0, 1)
    plus, minus = (F.rotate(tensor, angle).permute(1, 2, 0).numpy() for angle in (9.0, -9.0))
    rotate = fixed_ops(9)[5]
    seed_transform(rotate, 4)
    seen = []
    for _ in range(40):
        out = rotate(image=image)["image"]
        assert np.array_equal(out, plus) or np.array_equal(out, minus)
        seen.append(np.array_equal(out, plus))
    assert 0 < sum(seen) < len(seen)


def test_fixed_randaugment_gives_only_torchvision_outcomes() -> None:
    """One op per image at magnitude 9: every output is one of torchvision's 23 distinct outcomes, and all occur."""
    image = sample_images(32)[1]
    outcomes = {
        (name, sign): torchvision_op(image, name, 9, sign).tobytes()
        for name in OP_NAMES
        for sign in ((1, -1) if RandAugment()._augmentation_space(31, (32, 32))[name][1] else (1,))
    }
    assert len(set(outcomes.values())) == 23
    augment = create_randaugment(num_ops=1, magnitude=9)
    seed_transform(augment, 0)
    drawn = [augment(image=image)["image"].tobytes() for _ in range(600)]
    assert set(drawn) == set(outcomes.values())


def test_uniform_strength_varies_where_fixed_does_not() -> None:
    """The same rotate op drawn 30 times: two outcomes with fixed strengths, many with uniform ones."""
    image = sample_images(32)[0]
    distinct = {}
    for strength in ("fixed", "uniform"):
        rotate = create_randaugment(magnitude=9, strength=strength).transforms[5 if strength == "fixed" else 1]
        seed_transform(rotate, 1)
        distinct[strength] = len({rotate(image=image)["image"].tobytes() for _ in range(30)})
    assert distinct["fixed"] == 2 and distinct["uniform"] > 10


def test_fixed_randaugment_draws_ops_with_replacement_in_the_order_drawn() -> None:
    """As torchvision: the same op may come twice, and two ops run in the order they were drawn."""
    augment = create_randaugment(num_ops=2, magnitude=9)
    assert isinstance(augment, A.RandomOrder) and augment.replace and augment.n == 2
    uniform = create_randaugment(num_ops=2, magnitude=9, strength="uniform")
    assert isinstance(uniform, A.SomeOf) and not uniform.replace


def test_magnitude_zero_is_identity_but_for_solarize_autocontrast_equalize() -> None:
    image = sample_images(32)[0]
    for name, op in zip(OP_NAMES, fixed_ops(0), strict=True):
        for sign in (1, -1):
            out = bench_op(op, image, sign)
            if name == "Solarize":  # threshold 255: only white turns black
                assert np.array_equal(out, np.where(image == 255, 0, image))
            elif name not in {"AutoContrast", "Equalize"}:
                assert np.array_equal(out, image), name


@pytest.mark.parametrize("strength", ["fixed", "uniform"])
def test_seeded_train_transform_repeats_and_seeds_differ(strength: str) -> None:
    images = sample_images(16) * 4
    runs = []
    for seed in (5, 5, 6):
        transform = create_train_transform(MEAN, STD, randaug_strength=strength)
        seed_transform(transform, seed)
        runs.append(torch.stack([transform(image=image)["image"] for image in images]))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_signed_ops_draw_their_sign_from_the_seeded_generator() -> None:
    image = sample_images(16)[0]
    signs = []
    for _ in range(2):
        blend, shift = SignedBlend("brightness", 0.5), SignedShift("translate_x", 9)
        seed_transform(blend, 3)
        seed_transform(shift, 3)
        signs.append(
            [(blend(image=image)["image"].tobytes(), shift(image=image)["image"].tobytes()) for _ in range(20)]
        )
    assert signs[0] == signs[1] and len({pair[0] for pair in signs[0]}) == 2


def test_bad_strength_and_kinds_are_refused() -> None:
    with pytest.raises(DataError, match="strength must be one of fixed, uniform"):
        create_randaugment(2, 9, strength="half")
    with pytest.raises(DataError, match="strength"):
        create_train_transform(MEAN, STD, randaug_strength="Fixed")
    with pytest.raises(DataError, match="blend kind"):
        SignedBlend("hue", 0.1)
    with pytest.raises(DataError, match="shift kind"):
        SignedShift("rotate", 9)
