"""A decoded-image cache on disk for ImageFolder splits: one entry per class's files at one image size and mode.

<cache_dir>/decoded/<key>/images.u8  raw uint8 [n, S, S, 3]: the class's readable files, in split order
<cache_dir>/decoded/<key>/meta.json  written last: format, img_size, resize, class, split root, shape, kept, skipped

The key hashes CACHE_FORMAT, the image size, the resize mode (pad, center-crop; stretch adds nothing, so entries
written before --resize existed stay valid) and each file's resolved path, size and mtime, so a changed, added or
removed file gives a new key and stale pixels are never served. An entry is built in a temporary folder and renamed
into place, so concurrent builders never leave a partial entry; an entry that is damaged counts as absent.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.decode import (
    DecodedImages,
    decode_files,
    decode_split,
    require_readable,
    select_classes,
    warn_skipped,
)
from bench.data.errors import DataError
from bench.data.splits import ImageSplit
from bench.data.stack import ImageStack

CACHE_FORMAT = 1  # bump whenever read_image's pixels or the entry layout change
IMAGES, META = "images.u8", "meta.json"
READ_ATTEMPTS = 3

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class ClassFiles:
    """The files of one class of a split, in split order: as the split names them and resolved (for the key).

    split_root: the folder the split's files share, recorded in meta.json for whoever looks into the cache.
    """

    name: str
    split_root: str
    paths: tuple[Path, ...]
    resolved: tuple[str, ...]
    stats: tuple[tuple[int, int], ...] | None = None  # (size, mtime_ns) per file from the class's index record


@dataclass(frozen=True)
class CacheEntry:
    """One class's entry: images read-only uint8 memmap [n, S, S, 3]; kept int64 [n] positions of those images
    among the class's files; reasons: position -> why that file could not be read."""

    images: np.memmap
    kept: np.ndarray
    reasons: dict[int, str]


def entry_key(
    resolved: Sequence[str], img_size: int, resize: str = "stretch", stats: Sequence[tuple[int, int]] | None = None
) -> str:
    """sha256 hex digest of CACHE_FORMAT, img_size, the resize mode and every file's resolved path, size and mtime_ns,
    in order. stretch adds nothing to the hash: its keys are those of entries written before --resize existed.

    stats: each file's (size, mtime_ns) as the class's index record has them (the record the data fingerprint is
    made from; (-1, -1) for a file that could not be stat'ed); None: stat the files here.
    """
    mode = "" if resize == "stretch" else f"\0{resize}"
    digest = hashlib.sha256(f"bench decoded images v{CACHE_FORMAT}\0{img_size}{mode}\n".encode())
    for position, path in enumerate(resolved):
        if stats is not None:
            size, mtime = stats[position]
        else:
            try:
                stat = os.stat(path)
                size, mtime = stat.st_size, stat.st_mtime_ns
            except OSError:  # gone since the split was listed: decoding skips it, and it changes the key when back
                size, mtime = -1, -1
        digest.update(os.fsencode(path) + f"\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def _write_error(root: Path, error: OSError) -> DataError:
    reason = error.strerror or str(error)
    return DataError(
        f"cannot write the decode cache in {root}: {reason}; pass --cache-dir somewhere writable or --no-decode-cache"
    )


def _read_entry(folder: Path, files: ClassFiles, img_size: int, resize: str) -> CacheEntry | None:
    """The entry in `folder` if it is complete and describes `files`; None if it is absent, partial or damaged."""
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        kept = np.asarray(meta["kept"], dtype=np.int64)
        shape = tuple(int(n) for n in meta["shape"])
        failed = np.setdiff1d(np.arange(len(files.paths)), kept)
        in_order = np.array_equal(kept, np.unique(kept[(kept >= 0) & (kept < len(files.paths))]))
        if not in_order or meta["format"] != CACHE_FORMAT or shape != (len(kept), img_size, img_size, 3):
            return None
        if meta.get("resize", "stretch") != resize:  # entries written before --resize existed hold stretched images
            return None
        reasons = {}
        for position, text in zip(failed.tolist(), meta["skipped"], strict=True):
            prefix = f"{files.resolved[position]}: "
            if not text.startswith(prefix):
                return None
            reasons[position] = text[len(prefix) :]
        if (folder / IMAGES).stat().st_size != math.prod(shape):
            return None
        images = np.memmap(folder / IMAGES, dtype=np.uint8, mode="r", shape=shape)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return CacheEntry(images=images, kept=kept, reasons=reasons)


def _sync_folder(folder: Path) -> None:
    """Make the names in `folder` durable (POSIX; Windows cannot open a folder to sync it)."""
    if os.name == "nt":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_entry(
    folder: Path, files: ClassFiles, img_size: int, resize: str, threads: int | None, progress: Progress | None
) -> None:
    """Decode the class into images.u8 in `folder`, then meta.json, each synced to disk."""
    with open(folder / IMAGES, "wb") as out:
        paths = [Path(p) for p in files.resolved]
        failures = decode_files(
            paths, img_size, lambda _, image: out.write(image.data), resize=resize, threads=threads, progress=progress
        )
        out.flush()
        os.fsync(out.fileno())
    failed = sorted(failures)
    named = [f"{files.paths[p]}: {failures[p].removeprefix(f'{files.resolved[p]}: ')}" for p in failed]
    require_readable(files.name, len(files.paths), named)  # in the split's own path names, as decode_split
    kept = [p for p in range(len(files.paths)) if p not in failures]
    meta = {
        "format": CACHE_FORMAT,
        "img_size": img_size,
        "resize": resize,
        "class": files.name,
        "root": files.split_root,
        "shape": [len(kept), img_size, img_size, 3],
        "kept": kept,
        "skipped": [failures[p] for p in failed],
    }
    with open(folder / META, "w", encoding="utf-8") as out:
        out.write(json.dumps(meta, indent=1))
        out.flush()
        os.fsync(out.fileno())
    _sync_folder(folder)


def _build_entry(
    root: Path,
    key: str,
    files: ClassFiles,
    img_size: int,
    resize: str,
    threads: int | None,
    progress: Progress | None,
) -> Path:
    """Write the class's entry into a new temporary folder under `root` and return that folder."""
    folder = root / f".tmp-{key}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        folder.mkdir(parents=True)
        _write_entry(folder, files, img_size, resize, threads, progress)
    except OSError as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise _write_error(root, error) from None
    except BaseException:  # no readable file, Ctrl-C: leave nothing behind
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def _publish(built: Path, entry: Path) -> None:
    """Rename the finished `built` folder to `entry`; if another process published first, drop ours for theirs."""
    try:
        os.rename(built, entry)
    except OSError as error:
        shutil.rmtree(built, ignore_errors=True)
        if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise _write_error(entry.parent, error) from None


def discard_entry(entry: Path) -> None:
    """Move a damaged entry aside in one step (so no reader sees it half deleted), then delete it."""
    trash = entry.parent / f".trash-{entry.name}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.rename(entry, trash)
    except FileNotFoundError:
        return
    except OSError as error:
        raise _write_error(entry.parent, error) from None
    shutil.rmtree(trash, ignore_errors=True)


def _mark_used(entry: Path) -> None:
    """Refresh meta.json's modification time: `bench cache --unused DAYS` goes by it (a read-only cache stays as is)."""
    with contextlib.suppress(OSError):
        os.utime(entry / META)


def load_class(
    files: ClassFiles,
    img_size: int,
    root: Path,
    *,
    resize: str = "stretch",
    threads: int | None = None,
    progress: Progress | None = None,
) -> CacheEntry:
    """The class's entry under `root` for images made square as `resize` says, decoding its files only when there is
    no valid entry for them yet."""
    require_readable(files.name, len(files.paths), ())  # a class without files
    entry = root / entry_key(files.resolved, img_size, resize, files.stats)
    for _ in range(READ_ATTEMPTS):
        found = _read_entry(entry, files, img_size, resize)
        if found is not None:
            _mark_used(entry)
            return found
        discard_entry(entry)
        _publish(_build_entry(root, entry.name, files, img_size, resize, threads, progress), entry)
    raise DataError(f"the decode cache entry {entry} is unreadable right after writing it; pass --no-decode-cache")


def _stack(parts: list[np.memmap], sources: list[np.ndarray]) -> tuple[ImageStack, np.ndarray]:
    """parts[k]: uint8 [n_k, S, S, 3] with split indices sources[k] int64 [n_k] -> one stack in split index order,
    and its int64 [N] split indices."""
    source = np.concatenate(sources)
    part_of = np.concatenate([np.full(len(s), k, dtype=np.int64) for k, s in enumerate(sources)])
    row_of = np.concatenate([np.arange(len(s), dtype=np.int64) for s in sources])
    order = np.argsort(source, kind="stable")
    return ImageStack(parts, part_of[order], row_of[order]), source[order]


def _class_files(split: ImageSplit, label: int, split_root: str, paths: tuple[Path, ...]) -> ClassFiles:
    """The class's files, with real paths, sizes and mtimes from its index record when the split has one for exactly
    these files (an ImageFolder split), else from the files themselves."""
    name = split.classes[label]
    record = split.records.get(name)
    if record is not None and len(record) == len(paths):
        stats = tuple(zip(record.sizes, record.mtimes, strict=True))
        return ClassFiles(name, split_root, paths, record.resolved_paths(), stats)
    return ClassFiles(name, split_root, paths, tuple(os.path.realpath(p) for p in paths))


def decode_split_cached(
    split: ImageSplit,
    class_names: Sequence[str],
    img_size: int,
    cache_dir: Path,
    *,
    resize: str = "stretch",
    threads: int | None = None,
    progress: Progress | None = None,
) -> DecodedImages:
    """decode_split through the cache in `cache_dir`/decoded: the same pixels, order, labels and skipped files (an
    entry holds one resize mode; another mode has its own entry).

    `images` is an ImageStack over one read-only memmap per class, so nothing is copied into memory. Only classes
    without a valid entry are decoded; progress(done, total) as decode_split, and after each class. Splits held in
    memory (built-in data sets) bypass the cache.
    """
    if split.paths is None:
        return decode_split(split, class_names, img_size, resize=resize, threads=threads, progress=progress)
    labels_wanted, indices = select_classes(split, class_names, img_size)
    root = Path(cache_dir).expanduser() / "decoded"
    split_root = os.path.commonpath([os.path.abspath(p) for p in split.paths])
    parts, sources, skipped, done = [], [], {}, 0
    for label in labels_wanted:
        in_class = np.flatnonzero(split.labels == label)
        paths = tuple(split.paths[i] for i in in_class)
        files = _class_files(split, label, split_root, paths)
        report = None if progress is None else (lambda d, _, start=done: progress(start + d, len(indices)))
        entry = load_class(files, img_size, root, resize=resize, threads=threads, progress=report)
        done += len(in_class)
        if progress is not None:
            progress(done, len(indices))
        parts.append(entry.images)
        sources.append(in_class[entry.kept])
        skipped.update({int(in_class[p]): f"{paths[p]}: {reason}" for p, reason in entry.reasons.items()})
    images, source_indices = _stack(parts, sources)
    skipped_files = tuple(skipped[i] for i in sorted(skipped))
    warn_skipped(skipped_files, len(indices))
    return DecodedImages(
        images=images, labels=split.labels[source_indices], source_indices=source_indices, skipped=skipped_files
    )
