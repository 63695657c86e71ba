"""Outputs appear whole or not at all: finished under a temporary name, then renamed into place."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def replace_dir(staged: Path, target: Path) -> None:
    """Move the finished folder ``staged`` to ``target``, replacing an existing ``target``.

    The old folder is first renamed aside (``.<name>.old``), so ``target`` is never half old and
    half new, and a crash between the two renames leaves the old copy recoverable.
    """
    if not target.exists():
        os.replace(staged, target)
        return
    old = target.parent / f".{target.name}.old"
    if old.exists():
        shutil.rmtree(old)
    os.replace(target, old)
    os.replace(staged, target)
    shutil.rmtree(old)
