"""A store on disk of pine wilt landscape footprints, shared by the processes of one machine.

A footprint (the year each landscape cell of each path is infected, see
:meth:`models.perils.pine_wilt.PineWilt.footprint`) depends on the landscape, the seed and the path
alone. The process-wide memory cache serves every later run of a process; this store serves the
next process: a command-line valuation, an API worker after a restart, a Dask or process-pool
worker. Catastrophe models keep their event footprints on disk for the same reason.

Each 32-path block is one ``.npy`` file (int16, shape (paths, cells)). Its name is the SHA-256 of

* :data:`FORMAT`, the layout of the file;
* :func:`source_digest`, the SHA-256 of the source files the cell process is defined in (the peril,
  its compiled kernels, the keyed random numbers and the landscape module) and of the numpy, numba
  and llvmlite versions: **any edit to them, or upgrade, invalidates every stored footprint**, so a
  footprint is never read by code that would compute another one;
* the landscape token (the grid, the cells' infectivity, the initial cells, the spread rates), the
  seed, the block's first path, its number of paths and the horizon in years.

A file is written to a temporary name and renamed (concurrent writers never leave a torn file), and
checked on read (shape, type, values): a file that fails is ignored and the block computed again.
The store keeps at most ``CRE_FOOTPRINT_STORE_MB`` MiB (default 1,024), dropping the least
recently used files first (checked at a process's first write and every 64 after), and removes a
crashed writer's temporary files after an hour.

Where: ``CRE_FOOTPRINT_STORE`` names the folder; ``off`` (or an empty value) turns the store off;
unset, it is ``$XDG_CACHE_HOME/carbon-risk-engine/footprints`` (``~/.cache/...``).

A process may read without writing (:func:`set_writes`). The service's compute workers do, once their
warm-up has stored the default seed's footprint: a request with a seed of its own would otherwise
store a footprint no other process asks for, 5 MiB per 1,000 paths (the API load test's 180 requests
wrote 961 MiB and cost each request 15 ms more of a worker).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger("carbon_risk.footprints")

#: the layout of a stored block (bump when it changes)
FORMAT = 1
#: the modules the cell process is defined in (relative to the ``models`` package)
SOURCES = ("perils/pine_wilt.py", "perils/_pine_wilt_kernels.py", "perils/pine_wilt_landscape.py", "rng.py",
           "_kernels.py")
DEFAULT_MAX_MB = 1024
#: temporary files older than this are a crashed writer's, removed when the store is pruned
STALE_TMP_SECONDS = 3600

_PRUNE_LOCK = threading.Lock()
_writes_since_prune = 0
_writes = True
_warned: set = set()  # folders a write has failed in (warned once)


def set_writes(on: bool) -> bool:
    """Let this process write to the store, or only read it; returns the previous setting."""
    global _writes
    before, _writes = _writes, bool(on)
    return before


def store_dir() -> Path | None:
    """The store's folder, or None when it is off (``CRE_FOOTPRINT_STORE``)."""
    v = os.environ.get("CRE_FOOTPRINT_STORE")
    if v is not None:
        return None if v.strip().lower() in ("", "off", "0", "none") else Path(v)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "carbon-risk-engine" / "footprints"


def max_bytes() -> int:
    try:
        return max(0, int(os.environ.get("CRE_FOOTPRINT_STORE_MB", DEFAULT_MAX_MB))) * 2**20
    except ValueError:
        return DEFAULT_MAX_MB * 2**20


@lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 over the source files of the cell process (:data:`SOURCES`) and the versions of what
    compiles and runs it (numpy, numba, llvmlite, the machine's architecture): an upgrade that could
    round a hazard differently reads none of the old footprints."""
    import platform

    import llvmlite
    import numba

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for rel in SOURCES:
        h.update(rel.encode() + b"\0")
        h.update((root / rel).read_bytes())
    h.update(f"numpy {np.__version__} numba {numba.__version__} llvmlite {llvmlite.__version__} "
             f"{platform.machine()}".encode())
    return h.hexdigest()


def block_key(token: str, seed: int, start: int, n_paths: int, years: int) -> str:
    """The stored block's name: what decides its content, hashed."""
    text = f"{FORMAT}|{source_digest()}|{token}|{int(seed)}|{int(start)}|{int(n_paths)}|{int(years)}"
    return hashlib.sha256(text.encode()).hexdigest()


def _path(folder: Path, key: str) -> Path:
    return folder / key[:2] / f"{key}.npy"


def read_block(token: str, seed: int, start: int, n_paths: int, years: int, n_cells: int) -> np.ndarray | None:
    """A stored block (int16, shape (n_paths, n_cells)), or None when the store has no valid one."""
    folder = store_dir()
    if folder is None:
        return None
    p = _path(folder, block_key(token, seed, start, n_paths, years))
    try:
        a = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
        log.warning("ignoring an unreadable pine wilt footprint %s (%s)", p, exc)
        return None
    if a.dtype != np.int16 or a.shape != (n_paths, n_cells) or (a < -1).any() or \
            ((a >= years) & (a != np.iinfo(np.int16).max)).any():
        log.warning("ignoring a pine wilt footprint %s of the wrong shape or values", p)
        return None
    try:
        os.utime(p)  # recently used: kept longest
    except OSError:
        pass
    return a


def write_block(token: str, seed: int, start: int, years: int, block: np.ndarray) -> None:
    """Store a block (atomic: a temporary file renamed); a store that cannot be written is skipped."""
    global _writes_since_prune
    folder = store_dir()
    if folder is None or not _writes:
        return
    p = _path(folder, block_key(token, seed, start, block.shape[0], years))
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        # no fsync (it cost 0.12 s a 10,000-path run here, more on slow disks): a crash can leave an
        # empty or short block under its name, which read_block ignores and the next run rewrites
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(block, dtype=np.int16), allow_pickle=False)
        os.replace(tmp, p)
    except OSError as exc:
        if folder not in _warned:  # once per folder and process: a read-only home must not flood the log
            _warned.add(folder)
            log.warning("could not store pine wilt footprints in %s (%s); runs simulate them instead", folder, exc)
        try:
            tmp.unlink()
        except OSError:
            pass
        return
    with _PRUNE_LOCK:
        # a process prunes at its first write (short command-line runs write few blocks), then every 64
        due = _writes_since_prune % 64 == 0
        _writes_since_prune += 1
    if due:
        prune(folder)


def prune(folder: Path | None = None, limit: int | None = None) -> int:
    """Delete the least recently used blocks until the store holds at most ``limit`` bytes; returns
    the bytes left."""
    folder = folder if folder is not None else store_dir()
    if folder is None or not folder.is_dir():
        return 0
    limit = max_bytes() if limit is None else limit
    files = []
    stale = time.time() - STALE_TMP_SECONDS
    for sub in folder.iterdir():
        if not sub.is_dir():
            continue
        for f in sub.iterdir():
            try:
                st = f.stat()
            except OSError:
                continue
            if f.suffix == ".tmp":  # a writer's temporary file: left behind if it crashed
                if st.st_mtime < stale:
                    try:
                        f.unlink()
                    except OSError:
                        pass
                continue
            if f.suffix == ".npy":
                files.append((st.st_mtime, st.st_size, f))
    total = sum(s for _, s, _ in files)
    for _, size, f in sorted(files, key=lambda t: t[0]):
        if total <= limit:
            break
        try:
            f.unlink()
            total -= size
        except OSError:
            continue
    return total


def usage(folder: Path | None = None) -> dict:
    """What the store holds: its folder, blocks, bytes and bound (an empty store if it does not exist)."""
    folder = folder if folder is not None else store_dir()
    out = {"folder": str(folder) if folder is not None else None, "enabled": folder is not None, "blocks": 0,
           "bytes": 0, "max_bytes": max_bytes()}
    if folder is None or not folder.is_dir():
        return out
    for f in folder.glob("*/*.npy"):
        try:
            out["bytes"] += f.stat().st_size
            out["blocks"] += 1
        except OSError:
            continue
    return out


def clear(folder: Path | None = None) -> int:
    """Delete every stored block and temporary file; returns the bytes freed."""
    folder = folder if folder is not None else store_dir()
    if folder is None or not folder.is_dir():
        return 0
    freed = 0
    for f in list(folder.glob("*/*.npy")) + list(folder.glob("*/.*.tmp")):
        try:
            size = f.stat().st_size
            f.unlink()
            freed += size
        except OSError:
            continue
    return freed


__all__ = ["DEFAULT_MAX_MB", "FORMAT", "SOURCES", "block_key", "clear", "max_bytes", "prune", "read_block",
           "set_writes", "source_digest", "store_dir", "usage", "write_block"]
