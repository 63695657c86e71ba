"""Outputs appear whole or not at all: finished under a temporary name, then renamed into place.

Every file or folder the project writes goes through here: :func:`temporary` gives a name beside
the final one that is unique to the process (two runs writing into one folder never share it),
:func:`output_file` yields it and renames it into place only when the block finishes, and
:func:`replace_dir` swaps a finished folder in.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path


def _host() -> str:
    return socket.gethostname().replace("-", "_").replace(".", "_") or "host"


def temporary(path: str | os.PathLike[str], suffix: str = "") -> Path:
    """A name beside ``path``, unique to this host, process and call, for writing it (a file or a
    folder) before it is done: ``.<name>.<host>-<pid>-<random><suffix>.tmp``.

    It starts with ``.`` and ends in ``.tmp`` so no pattern that looks for finished files
    (``*.tif``, ``*.csv``) takes it.
    """
    path = Path(path)
    token = f"{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return path.with_name(f".{path.name}.{token}{suffix}.tmp")


def remove_abandoned(path: Path) -> None:
    """Delete temporary folders for ``path`` left by processes of this host that are gone
    (killed runs); those of live processes and other hosts are left alone."""
    prefix = f".{path.name}.{_host()}-"
    for tmp in path.parent.glob(f"{glob_escape(prefix)}*.tmp"):
        try:
            pid = int(tmp.name[len(prefix) :].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                remove(tmp)
        except (ValueError, PermissionError, OSError):
            continue  # not ours to judge: another user's live process, or an odd name


def staging_dir(target: Path) -> Path:
    """A new, empty temporary folder beside ``target`` to build it in (see :func:`replace_dir`);
    abandoned ones of killed runs on this host are removed first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(target)
    tmp = temporary(target)
    tmp.mkdir()
    return tmp


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters made literal."""
    import glob

    return glob.escape(text)


def remove(path: Path) -> None:
    """Delete a temporary file if it is there."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def publish(tmp: Path, path: Path, replace: bool = True) -> Path:
    """Rename the finished temporary file ``tmp`` onto ``path``.

    With ``replace=False`` an existing ``path`` (another run finished it meanwhile) is left as
    it is and :class:`FileExistsError` is raised: the file is linked under its name, which fails
    when the name is taken, then the temporary name is dropped (on a filesystem without hard
    links, a check right before the rename does the same with a tiny window).
    """
    if replace:
        os.replace(tmp, path)
        return path
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links here
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        os.replace(tmp, path)
        return path
    os.unlink(tmp)
    return path


@contextlib.contextmanager
def output_file(
    path: str | os.PathLike[str], suffix: str = "", replace: bool = True
) -> Iterator[Path]:
    """Yield a temporary name for ``path``; rename it onto ``path`` when the block ends without an
    error (``replace=False``: unless ``path`` exists by then), delete it when it fails. The parent
    folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path, suffix)
    try:
        yield tmp
        publish(tmp, path, replace)
    finally:
        remove(tmp)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with output_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def writable_dir(path: str | os.PathLike[str], key: str) -> Path:
    """Create the output folder ``path`` if needed and prove a file can be written in it; a
    DataError naming ``key`` when it is a file, cannot be created, or is read-only."""
    from firedpy_nrt.errors import DataError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{key} {path} is a file, not a folder")
    probe = temporary(path / "write-test")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with open(probe, "xb"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DataError(f"{key} {path} cannot be written ({reason})") from None
    finally:
        remove(probe)
    return path


def require_inside(path: Path, root: Path, what: str) -> Path:
    """``path`` if it resolves inside ``root``; a DataError naming both otherwise. Every path
    built from what a server or an archive says goes through this before anything is written."""
    from firedpy_nrt.errors import DataError

    resolved, top = Path(path).resolve(), Path(root).resolve()
    if resolved != top and top not in resolved.parents:
        raise DataError(f"refused {what} {path}: it is outside {root}")
    return path


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
