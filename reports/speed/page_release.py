"""What handing mapped pages back costs: read every image of a warm 224 px mapping in random order, with the
ImageStack's default budget and with none, twice each; then one training augmentation for scale.

python reports/speed/page_release.py   (writes a 1.1 GiB scratch file in the temporary folder, removed after)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from bench.data.augment import create_train_transform
from bench.data.stack import RESIDENT_BUDGET, ImageStack

IMAGES, SIDE = 8000, 224


def read_all(path: Path, budget: int) -> tuple[float, int]:
    """Microseconds an image to read (and sum) every image in random order; how many releases that made."""
    part = np.memmap(path, dtype=np.uint8, mode="r", shape=(IMAGES, SIDE, SIDE, 3))
    stack = ImageStack([part], np.zeros(IMAGES), np.arange(IMAGES), resident_budget=budget)
    started = time.perf_counter()
    for index in np.random.default_rng(1).permutation(IMAGES):
        stack[index].sum(dtype=np.uint64)
    return (time.perf_counter() - started) / IMAGES * 1e6, stack.releases


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "images.u8"
        with open(path, "wb") as out:
            for _ in range(IMAGES // 500):
                out.write(rng.integers(0, 256, (500, SIDE, SIDE, 3), dtype=np.uint8).tobytes())
        for budget in (2**62, RESIDENT_BUDGET, 2**62, RESIDENT_BUDGET):
            micros, releases = read_all(path, budget)
            label = "no release" if budget == 2**62 else f"release every {budget >> 20} MiB"
            print(f"{label:>24}: {micros:6.1f} us an image ({releases} releases)")
    transform = create_train_transform([0.5] * 3, [0.25] * 3)
    image = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    started = time.perf_counter()
    for _ in range(100):
        transform(image=image)
    print(f"{'training augmentation':>24}: {(time.perf_counter() - started) * 1e4:6.1f} us an image")


if __name__ == "__main__":
    main()
