"""Near-duplicate images by a 64-bit difference hash (dHash) and a multi-index over its bits.

:func:`dhash` shrinks an image to a 9 x 8 grey thumbnail and sets one bit per pair of horizontal neighbours (left
darker than right); burst frames, re-encoded copies and slightly shifted or brightened copies land a few bits apart.
:func:`find_near_pairs` finds every pair within a Hamming distance ``t`` without comparing all pairs: split the 64 bits
into ``t + 1`` blocks; two hashes at most ``t`` bits apart agree exactly on at least one block (pigeonhole), so only
hashes that share a block value are compared.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Hamming distance (of 64 bits) up to which two difference hashes count as near-duplicates.
NEAR_THRESHOLD = 6
#: The thumbnail the hash compares: 9 columns, 8 rows; smaller images are not hashed.
THUMB_WIDTH, THUMB_HEIGHT = 9, 8
#: Candidate pairs looked at per step: bounds memory when many hashes share a block value.
_CHUNK = 1 << 22


def dhash(image: np.ndarray) -> int:
    """uint8 [H, W] grey or [H, W, 3] RGB (H >= 8, W >= 9) -> 64-bit difference hash.

    Bit 63 - (8 * row + col) is set when thumbnail pixel (row, col + 1) is brighter than (row, col).
    """
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    thumb = cv2.resize(grey, (THUMB_WIDTH, THUMB_HEIGHT), interpolation=cv2.INTER_AREA)
    bits = thumb[:, 1:] > thumb[:, :-1]  # [8, 8]
    return int.from_bytes(np.packbits(bits.ravel()).tobytes(), "big")


def can_hash(width: int, height: int) -> bool:
    """Whether an image is at least the thumbnail's size (smaller ones would be blown up, not summarised)."""
    return width >= THUMB_WIDTH and height >= THUMB_HEIGHT


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Bits that differ between 64-bit hashes (element-wise for arrays)."""
    return np.bitwise_count(np.asarray(a, dtype=np.uint64) ^ np.asarray(b, dtype=np.uint64))


def _blocks(threshold: int) -> list[tuple[int, np.uint64]]:
    """``threshold + 1`` (shift, mask) pairs that cut 64 bits into blocks of near-equal width."""
    count = threshold + 1
    edges = [64 * k // count for k in range(count + 1)]
    return [(lo, np.uint64((1 << (hi - lo)) - 1)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def _chunks(counts: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive index ranges of ``counts`` whose sums stay near ``_CHUNK`` (a single large count stays whole)."""
    total = np.cumsum(counts)
    bounds = [0]
    while bounds[-1] < len(counts):
        start = bounds[-1]
        before = total[start - 1] if start else 0
        stop = int(np.searchsorted(total, before + _CHUNK, side="right"))
        bounds.append(max(stop, start + 1))
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def find_near_pairs(left: np.ndarray, right: np.ndarray, threshold: int = NEAR_THRESHOLD) -> np.ndarray:
    """Every (i, j, distance) with ``hamming(left[i], right[j]) <= threshold``, each pair once: int64 [N, 3],
    sorted by j, then i. ``left`` [L] and ``right`` [R] are uint64 hashes; 0 <= threshold < 64."""
    if not 0 <= threshold < 64:
        raise ValueError(f"threshold must be 0-63 bits, not {threshold}")
    left = np.asarray(left, dtype=np.uint64)
    right = np.asarray(right, dtype=np.uint64)
    blocks = _blocks(threshold)
    found = [np.empty((0, 3), dtype=np.int64)]
    for index, (shift, mask) in enumerate(blocks):
        left_keys = (left >> np.uint64(shift)) & mask
        order = np.argsort(left_keys, kind="stable")
        sorted_keys = left_keys[order]
        right_keys = (right >> np.uint64(shift)) & mask
        starts = np.searchsorted(sorted_keys, right_keys, side="left")
        counts = np.searchsorted(sorted_keys, right_keys, side="right") - starts
        for begin, end in _chunks(counts):
            part = counts[begin:end]
            j = np.repeat(np.arange(begin, end), part)
            offsets = np.arange(len(j)) - np.repeat(np.cumsum(part) - part, part)
            i = order[starts[j] + offsets]
            xor = left[i] ^ right[j]
            distance = np.bitwise_count(xor)
            keep = distance <= threshold
            for earlier_shift, earlier_mask in blocks[:index]:  # the pair is counted at the first block it shares
                keep &= ((xor >> np.uint64(earlier_shift)) & earlier_mask) != 0
            found.append(np.stack([i[keep], j[keep], distance[keep].astype(np.int64)], axis=1))
    pairs = np.concatenate(found)
    return pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]
