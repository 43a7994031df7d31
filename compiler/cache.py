"""On-disk cache of compiled kernels (object code), keyed by a hash of everything that
determines the code: the kernel source, the target machine and the compiler versions.

Entries live under $EMBER_CACHE_DIR, else $XDG_CACHE_HOME/ember, else ~/.cache/ember (created
0700). Each file carries a SHA-256 of its payload; an entry that fails the check is reported,
deleted and rebuilt, never used.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

MAGIC = b"EMBER-CACHE-1\n"


def cache_dir() -> Path:
    base = os.environ.get("EMBER_CACHE_DIR")
    if base:
        d = Path(base)
    else:
        d = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ember"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def enabled() -> bool:
    return os.environ.get("EMBER_DISK_CACHE", "1") != "0"


def key(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


def get(k: str, suffix: str = ".o") -> bytes | None:
    if not enabled():
        return None
    path = cache_dir() / (k + suffix)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    digest, payload = data[len(MAGIC):len(MAGIC) + 32], data[len(MAGIC) + 32:]
    if not data.startswith(MAGIC) or hashlib.sha256(payload).digest() != digest:
        warnings.warn(f"ember: corrupt cache entry {path} discarded; recompiling", RuntimeWarning)
        try:
            path.unlink()
        except OSError:
            pass
        return None
    return payload


def put(k: str, payload: bytes, suffix: str = ".o") -> None:
    if not enabled():
        return
    d = cache_dir()
    blob = MAGIC + hashlib.sha256(payload).digest() + payload
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    os.replace(tmp, d / (k + suffix))  # atomic: readers never see a partial entry


def entries() -> list[Path]:
    return sorted(p for p in cache_dir().iterdir() if p.is_file() and not p.name.startswith("."))


def clear() -> int:
    n = 0
    for p in entries():
        p.unlink()
        n += 1
    return n
