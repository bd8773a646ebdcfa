"""A folder dataset's fingerprint: what the workflow compares to know its files changed.

A folder source (``folder``, ``imagenet10``) is read from a path the params only name, so a
file added, removed or replaced there changes no param and no input Snakemake knows of. The
fingerprint (every file's relative path, size and modification time, hashed) is one of the
prepare rule's params: when it changes, the dataset is prepared again, and, if its bytes
changed, every run on it trains again (``cdrepro.identity``). It is cheap: one ``stat`` per
file, no image is read (about 0.1 s for ImageNet-10's 13,000 files).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MISSING = "missing"
"""The fingerprint of a path that is not a folder (prepare then says what is wrong)."""


def folder_fingerprint(root: str | Path) -> str:
    """A short hash of every file under ``root`` (path, size, mtime), in a fixed order."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return MISSING
    digest = hashlib.sha256()
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()  # os.walk visits them in this order
        for name in sorted(files):
            path = Path(folder, name)
            stat = path.stat()
            digest.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
