"""The per-class index of an ImageFolder tree: which image files a class folder holds, kept between commands.

A class folder's record lists its image files (sub-folders included, hidden ones skipped) sorted by their path
components, with each file's size and mtime. The data fingerprint of a task and the decode cache's keys are both made
from these records, so the two can never disagree about what a class holds.

Records are kept in ``<cache_dir>/index/<key>.json`` with the mtime of every folder walked. A later command walks a
class again only when one of those folders changed (a file added, removed or renamed changes its folder's mtime);
otherwise it only stats the listed files, and a file rewritten in place updates its size and mtime in the record. So a
second command re-reads no listing that did not change, and classes a command does not use are never listed at all.
A folder changed in the last :data:`RACY_SECONDS` is not kept (its mtime could still move within one clock tick); a
cache that cannot be written is simply not kept: the index is then built each time, with the same result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

INDEX_FORMAT = 1
RACY_SECONDS = 2.0
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _stat(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of a file, following links; (-1, -1) when it cannot be stat'ed (a dangling link: decoding
    then skips it with its reason)."""
    try:
        stat = os.stat(path)
    except OSError:
        return -1, -1
    return stat.st_size, stat.st_mtime_ns


@dataclass(frozen=True)
class ClassRecord:
    """One class folder's image files, in the split's order.

    names: paths relative to the class folder (os.sep between parts), sorted by their parts. sizes, mtimes: each
    file's size in bytes and mtime in ns ((-1, -1) when it could not be stat'ed). resolved: the class folder's real
    path. links: position -> the real path of a file reached through a symbolic link (the others' real path is
    ``resolved`` joined with the name).
    """

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    mtimes: tuple[int, ...]
    resolved: str
    links: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def paths(self, folder: Path) -> list[Path]:
        """The files as paths below ``folder`` (the class folder as the split names it)."""
        return [folder / name for name in self.names]

    def resolved_paths(self) -> tuple[str, ...]:
        """Every file's real path (what the decode cache keys on)."""
        return tuple(self.links.get(i, os.path.join(self.resolved, name)) for i, name in enumerate(self.names))

    @property
    def digest(self) -> str:
        """sha256 of every file's relative path (posix) and size, in order: the class's part of the fingerprint.

        Modification times are left out on purpose: a data set copied to another machine or cluster node (or
        extracted again) keeps its identity, so finished runs stay valid there; the decode cache keys on mtimes too.
        """
        digest = hashlib.sha256()
        for name, size in zip(self.names, self.sizes, strict=True):
            digest.update(f"{name.replace(os.sep, '/')}\0{size}\n".encode())
        return digest.hexdigest()


def _walk(folder: str) -> tuple[ClassRecord, dict[str, int]]:
    """List ``folder``'s image files (not descending into hidden folders or linked folders, as os.walk does) and the
    mtime of every folder walked (relative path -> ns; "" is the class folder)."""
    found: list[str] = []
    links: set[str] = set()
    dirs: dict[str, int] = {}
    pending = [""]
    while pending:
        rel = pending.pop()
        path = os.path.join(folder, rel) if rel else folder
        dirs[rel] = os.stat(path).st_mtime_ns
        with os.scandir(path) as entries:
            for entry in entries:
                if _is_hidden(entry.name):
                    continue
                name = os.path.join(rel, entry.name) if rel else entry.name
                if entry.is_dir():
                    if not entry.is_symlink():
                        pending.append(name)
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                    found.append(name)
                    if entry.is_symlink():
                        links.add(name)
    names = sorted(found, key=lambda name: name.split(os.sep))
    stats = [_stat(os.path.join(folder, name)) for name in names]
    record = ClassRecord(
        names=tuple(names),
        sizes=tuple(size for size, _ in stats),
        mtimes=tuple(mtime for _, mtime in stats),
        resolved=os.path.realpath(folder),
        links={i: os.path.realpath(os.path.join(folder, name)) for i, name in enumerate(names) if name in links},
    )
    return record, dirs


class ClassIndex:
    """Records of class folders, kept under ``cache_dir``/index (None: nothing is kept).

    ``walked`` counts the class folders listed from disk by this object (the others came from kept records): the
    tests' way to see that an unchanged class is not listed again.
    """

    def __init__(self, cache_dir: Path | None) -> None:
        self.folder = None if cache_dir is None else Path(cache_dir).expanduser() / "index"
        self.walked = 0

    def _file(self, resolved: str) -> Path | None:
        if self.folder is None:
            return None
        key = hashlib.sha256(f"bench index v{INDEX_FORMAT}\0{resolved}".encode()).hexdigest()[:32]
        return self.folder / f"{key}.json"

    def record(self, class_folder: Path) -> ClassRecord:
        """The record of ``class_folder``: a kept one when none of its folders changed (files re-stat'ed), else a
        fresh listing (kept for the next command)."""
        folder = str(class_folder)
        resolved = os.path.realpath(folder)
        file = self._file(resolved)
        kept = self._load(file, folder, resolved)
        if kept is not None:
            record, dirs, changed = kept
            if changed:
                self._save(file, record, dirs)
            return record
        self.walked += 1
        record, dirs = _walk(folder)
        self._save(file, record, dirs)
        return record

    def _load(self, file: Path | None, folder: str, resolved: str) -> tuple[ClassRecord, dict[str, int], bool] | None:
        """(record, folder mtimes, whether a file's size or mtime changed) from ``file`` when every folder it walked
        is unchanged; None when there is no usable kept record."""
        if file is None:
            return None
        try:
            kept = json.loads(file.read_text(encoding="utf-8"))
            if kept["format"] != INDEX_FORMAT or kept["resolved"] != resolved:
                return None
            dirs = {str(rel): int(mtime) for rel, mtime in kept["dirs"].items()}
            for rel, mtime in dirs.items():
                if os.stat(os.path.join(folder, rel) if rel else folder).st_mtime_ns != mtime:
                    return None
            names = tuple(str(name) for name in kept["names"])
            links = {int(i): str(path) for i, path in kept["links"].items()}
            before = list(zip(kept["sizes"], kept["mtimes"], strict=True))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if len(before) != len(names):
            return None
        stats = [_stat(os.path.join(folder, name)) for name in names]
        record = ClassRecord(
            names=names,
            sizes=tuple(size for size, _ in stats),
            mtimes=tuple(mtime for _, mtime in stats),
            resolved=resolved,
            links=links,
        )
        return record, dirs, stats != [tuple(pair) for pair in before]

    def _save(self, file: Path | None, record: ClassRecord, dirs: dict[str, int]) -> None:
        """Keep ``record`` in ``file`` (written to a temporary name, then renamed), unless a folder changed too
        recently to trust its mtime; a write that fails keeps nothing."""
        if file is None or max(dirs.values()) > time.time_ns() - RACY_SECONDS * 1e9:
            return
        text = json.dumps(
            {
                "format": INDEX_FORMAT,
                "resolved": record.resolved,
                "dirs": dirs,
                "names": record.names,
                "sizes": record.sizes,
                "mtimes": record.mtimes,
                "links": {str(i): path for i, path in record.links.items()},
            }
        )
        temporary = file.with_name(f".{file.name}.{secrets.token_hex(4)}")
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, file)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()


@dataclass(frozen=True)
class KeptRecord:
    """A record file under ``<cache_dir>/index``: the class folder it describes ("" when unreadable) and its size."""

    file: Path
    folder: str
    bytes: int

    @property
    def orphaned(self) -> bool:
        """Its class folder no longer exists (or the record cannot be read)."""
        return not self.folder or not os.path.isdir(self.folder)


def kept_records(cache_dir: Path) -> list[KeptRecord]:
    """Every record kept under ``cache_dir``/index, in name order."""
    found = []
    for file in sorted((Path(cache_dir) / "index").glob("*.json")):
        try:
            size = file.stat().st_size
            folder = str(json.loads(file.read_text(encoding="utf-8"))["resolved"])
        except (OSError, ValueError, KeyError, TypeError):
            folder, size = "", 0
        found.append(KeptRecord(file, folder, size))
    return found


def remove_records(records: list[KeptRecord]) -> int:
    """Delete these record files (one already gone is skipped); the bytes freed."""
    freed = 0
    for record in records:
        with contextlib.suppress(FileNotFoundError):
            record.file.unlink()
            freed += record.bytes
    return freed
