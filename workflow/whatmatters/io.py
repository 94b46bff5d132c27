"""Atomic writes and provenance: every output is whole or absent, and says what made it."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

# Packages whose versions go into every result's provenance.
_PROVENANCE_PACKAGES = (
    "torch", "torchvision", "numpy", "pandas", "pymc", "pytensor", "arviz",
    "snakemake", "mnist1d", "scikit-learn",
)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    Readers never see a half-written file: on error the temporary file is removed
    and `path` is left as it was (absent, or the previous complete version). The file gets
    the mode a plain `open(path, "w")` would give it (0666 less the umask), not mkstemp's
    0600, so a group sharing a project directory on a cluster can read the results.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@functools.cache
def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc), else by
    setting and restoring it once."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj) -> None:
    """Write `obj` as indented JSON, atomically. NaN/inf become null (strict JSON)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_strict(obj), indent=1, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _strict(obj):
    """Replace non-finite floats by None, recursively, so the JSON is standard."""
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


@functools.lru_cache(maxsize=1)
def git_revision() -> str:
    """The code revision of this checkout ('<sha>' or '<sha>-dirty'), or 'unknown' outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results (absent ones are skipped)."""
    versions = {"python": platform.python_version()}
    for name in _PROVENANCE_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    from whatmatters import __version__

    versions["whatmatters"] = __version__
    return versions


def provenance(**extra) -> dict:
    """What made a result: versions, code revision, host, time, plus caller-supplied fields
    (resolved settings, seed, device)."""
    return {
        "code_revision": git_revision(),
        "versions": package_versions(),
        "host": platform.node(),
        "platform": platform.platform(),
        "argv": sys.argv,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
