"""Looking after the decode cache: what it holds, and removing what is no longer wanted.

Entries are never modified in place: removal renames an entry aside in one step and then deletes it, so a process
reading the entry at that moment either sees it whole or not at all (a memory map already open keeps its pages).
"Last used" is the modification time of an entry's meta.json, which every read refreshes (see cache.load_class).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bench.data.cache import IMAGES, META, discard_entry

LEFTOVER_PREFIXES = (".tmp-", ".trash-")
LEFTOVER_GRACE_SECONDS = 3600  # a builder on another machine sharing the folder may still be writing


@dataclass(frozen=True)
class EntryInfo:
    """One decoded class: where its files were, which class, at what size and resize mode, how many images, bytes,
    last use."""

    path: Path
    root: str  # the split folder its files shared ("" when meta.json is unreadable)
    name: str  # the class ("" when meta.json is unreadable)
    img_size: int
    images: int
    bytes: int
    last_used: float  # seconds since the epoch
    resize: str = "stretch"  # how its images were made square ("" when meta.json is unreadable)

    @property
    def orphaned(self) -> bool:
        """The split folder its images came from no longer exists (or the entry cannot be read)."""
        return not self.root or not Path(self.root).is_dir()


@dataclass(frozen=True)
class Leftover:
    """A temporary folder of a builder (.tmp-) or a removal (.trash-) that did not finish."""

    path: Path
    bytes: int
    pid: int | None
    modified: float

    def abandoned(self, now: float) -> bool:
        """Its process is gone from this machine and it has not changed for LEFTOVER_GRACE_SECONDS."""
        return not _alive(self.pid) and now - self.modified > LEFTOVER_GRACE_SECONDS


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            continue
    return total


def _entry(folder: Path) -> EntryInfo:
    size = _folder_bytes(folder)
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        last_used = (folder / META).stat().st_mtime
        return EntryInfo(folder, str(meta["root"]), str(meta["class"]), int(meta["img_size"]),
                         int(meta["shape"][0]), size, last_used, str(meta.get("resize", "stretch")))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return EntryInfo(folder, "", "", 0, 0, size, folder.stat().st_mtime, "")


def _pid_of(name: str) -> int | None:
    """The builder's pid in '.tmp-<key>-<pid>-<hex>' or '.trash-<key>-<pid>-<hex>'."""
    parts = name.split("-")
    try:
        return int(parts[-2])
    except (IndexError, ValueError):
        return None


def scan(cache_dir: Path) -> tuple[list[EntryInfo], list[Leftover]]:
    """The entries of ``cache_dir``/decoded, by split folder, class and size, and its leftover temporary folders."""
    root = Path(cache_dir).expanduser() / "decoded"
    entries: list[EntryInfo] = []
    leftovers: list[Leftover] = []
    if not root.is_dir():
        return entries, leftovers
    for folder in sorted(root.iterdir()):
        if not folder.is_dir():
            continue
        if folder.name.startswith(LEFTOVER_PREFIXES):
            modified = folder.stat().st_mtime
            leftovers.append(Leftover(folder, _folder_bytes(folder), _pid_of(folder.name), modified))
        elif (folder / IMAGES).exists() or (folder / META).exists():
            entries.append(_entry(folder))
    entries.sort(key=lambda e: (e.root, e.name, e.img_size, e.resize, e.path.name))
    return entries, leftovers


def select_for_removal(
    entries: list[EntryInfo],
    *,
    everything: bool = False,
    unused_days: float | None = None,
    orphaned: bool = False,
    now: float | None = None,
) -> list[EntryInfo]:
    """The entries to remove: all of them, those not used for ``unused_days`` days, and/or the orphaned ones."""
    now = time.time() if now is None else now
    chosen = []
    for entry in entries:
        old = unused_days is not None and now - entry.last_used > unused_days * 86400
        if everything or old or (orphaned and entry.orphaned):
            chosen.append(entry)
    return chosen


def remove_entries(entries: list[EntryInfo]) -> int:
    """Remove the entries (each renamed aside first); returns the bytes freed."""
    freed = 0
    for entry in entries:
        discard_entry(entry.path)
        freed += entry.bytes
    return freed


def remove_leftovers(leftovers: list[Leftover], now: float | None = None) -> int:
    """Remove the abandoned leftovers; returns the bytes freed."""
    now = time.time() if now is None else now
    freed = 0
    for leftover in leftovers:
        if leftover.abandoned(now):
            shutil.rmtree(leftover.path, ignore_errors=True)
            freed += leftover.bytes
    return freed


def render_listing(folder: Path, entries: list[EntryInfo], leftovers: list[Leftover], now: float) -> list[str]:
    """What ``bench cache`` prints: a Markdown table of the entries, their total, and the leftovers' count."""
    if not entries and not leftovers:
        return [f"the decode cache in {folder} is empty"]
    mib = 2**20
    lines = [f"decode cache in {folder}/decoded",
             "| split folder | class | img px | resize | images | MiB | last used |",
             "|:---|:---|---:|:---|---:|---:|:---|"]  # fmt: skip
    for entry in entries:
        where = entry.root or "(unreadable entry)"
        if entry.root and entry.orphaned:
            where += " (gone)"
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used))
        lines.append(
            f"| {where} | {entry.name} | {entry.img_size} | {entry.resize} | {entry.images} | {entry.bytes / mib:.1f} "
            f"| {used} |"
        )
    lines.append(f"{len(entries)} entries, {sum(e.bytes for e in entries) / mib:.1f} MiB")
    if leftovers:
        size = sum(item.bytes for item in leftovers)
        stale = sum(item.abandoned(now) for item in leftovers)
        lines.append(f"{len(leftovers)} temporary folders ({size / mib:.1f} MiB), {stale} of them abandoned")
    return lines
