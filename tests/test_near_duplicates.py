"""The difference hash by hand, the Hamming distance, and the multi-index against an all-pairs comparison."""

from __future__ import annotations

import numpy as np
import pytest

from bench import near_duplicates
from bench.near_duplicates import can_hash, dhash, find_near_pairs, hamming

# an 8 x 9 thumbnail, one row per byte of the hash: left-to-right comparisons, "brighter" sets the bit
THUMB_ROWS = [
    ([0, 1, 2, 3, 4, 5, 6, 7, 8], 0xFF),  # rising
    ([8, 7, 6, 5, 4, 3, 2, 1, 0], 0x00),  # falling
    ([0, 10, 0, 10, 0, 10, 0, 10, 0], 0xAA),
    ([5] * 9, 0x00),  # ties set nothing
    ([0, 1, 2, 3, 4, 4, 4, 4, 4], 0xF0),
    ([4, 4, 4, 4, 4, 5, 6, 7, 8], 0x0F),
    ([3, 3, 3, 3, 3, 3, 3, 3, 9], 0x01),
    ([0, 9, 9, 9, 9, 9, 9, 9, 9], 0x80),
]
THUMB_HASH = 0xFF00AA00F00F0180


def test_dhash_by_hand() -> None:
    thumb = np.array([row for row, _ in THUMB_ROWS], dtype=np.uint8) * 20  # [8, 9]
    assert THUMB_HASH == int.from_bytes(bytes(byte for _, byte in THUMB_ROWS), "big")
    assert dhash(thumb) == THUMB_HASH
    assert dhash(np.repeat(thumb[:, :, None], 3, axis=2)) == THUMB_HASH  # grey RGB: the same
    assert dhash(np.repeat(np.repeat(thumb, 3, axis=0), 2, axis=1)) == THUMB_HASH  # 3x taller, 2x wider: area-averaged
    assert can_hash(9, 8) and not can_hash(8, 8) and not can_hash(9, 7)


def test_hamming() -> None:
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(2**64 - 1, 0) == 64
    assert hamming(THUMB_HASH, THUMB_HASH) == 0
    left = np.array([0, 1, 2**63], dtype=np.uint64)
    assert hamming(left, np.array([0, 3, 0], dtype=np.uint64)).tolist() == [0, 1, 1]


def _hashes_with_near_pairs(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random hashes a side; a third of the right side are left hashes with 0-10 bits flipped."""
    rng = np.random.default_rng(seed)
    left = [int.from_bytes(rng.bytes(8), "big") for _ in range(count)]
    right = [int.from_bytes(rng.bytes(8), "big") for _ in range(count)]
    for j in rng.choice(count, count // 3, replace=False):
        value = left[int(rng.integers(count))]
        for bit in rng.choice(64, int(rng.integers(0, 11)), replace=False):
            value ^= 1 << int(bit)
        right[j] = value
    right[0] = right[1] = left[0]  # the same hash twice
    return np.array(left, dtype=np.uint64), np.array(right, dtype=np.uint64)


def _all_pairs(left: np.ndarray, right: np.ndarray, threshold: int) -> list[tuple[int, int, int]]:
    found = []
    for j, b in enumerate(right.tolist()):
        for i, a in enumerate(left.tolist()):
            if (a ^ b).bit_count() <= threshold:
                found.append((i, j, (a ^ b).bit_count()))
    return found


@pytest.mark.parametrize("threshold", [0, 3, 6, 10])
def test_multi_index_finds_what_all_pairs_finds(threshold: int) -> None:
    left, right = _hashes_with_near_pairs(threshold, 300)
    expected = _all_pairs(left, right, threshold)
    assert len(expected) > 5  # planted pairs are in
    assert [tuple(p) for p in find_near_pairs(left, right, threshold).tolist()] == expected


def test_multi_index_in_small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    left, right = _hashes_with_near_pairs(1, 200)
    left[:50] = left[0]  # 50 equal hashes: one bucket larger than a chunk
    monkeypatch.setattr(near_duplicates, "_CHUNK", 7)
    assert [tuple(p) for p in find_near_pairs(left, right, 6).tolist()] == _all_pairs(left, right, 6)


def test_multi_index_edges() -> None:
    empty = np.array([], dtype=np.uint64)
    assert find_near_pairs(empty, np.array([1], dtype=np.uint64), 6).shape == (0, 3)
    assert find_near_pairs(np.array([2**64 - 1], dtype=np.uint64), np.array([0], dtype=np.uint64), 63).shape == (0, 3)
    with pytest.raises(ValueError, match="0-63"):
        find_near_pairs(empty, empty, 64)
