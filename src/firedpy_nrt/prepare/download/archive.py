"""Safe extraction of a product archive (zip or tar) into its product folder.

Every member is checked before anything is written: absolute paths, ``..`` and links that
point outside the product folder are refused. Extraction goes to a hidden temporary folder that
is renamed into place at the end, so a folder under its product name is always complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from firedpy_nrt.atomic import replace_dir, staging_dir, temporary
from firedpy_nrt.errors import DownloadError

log = logging.getLogger(__name__)


def archive_kind(path: Path) -> str:
    """``zip`` or ``tar`` from the file's content (the name may not say)."""
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise DownloadError(f"{path}: neither a zip nor a tar archive")


def _check_member(archive: Path, name: str) -> PurePosixPath:
    clean = name.replace("\\", "/")
    pure = PurePosixPath(clean)
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":") or pure.is_absolute():
        raise DownloadError(f"{archive}: refused member {name!r} (absolute path)")
    if ".." in pure.parts:
        raise DownloadError(f"{archive}: refused member {name!r} (leaves the product folder)")
    return pure


def _check_link(archive: Path, name: PurePosixPath, target: str) -> None:
    if target.startswith("/") or target.replace("\\", "/").startswith("/"):
        raise DownloadError(f"{archive}: refused link {str(name)!r} -> {target!r} (absolute)")
    depth = len(name.parts) - 1
    for part in PurePosixPath(target).parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            raise DownloadError(
                f"{archive}: refused link {str(name)!r} -> {target!r} (points outside)"
            )


def _extract_zip(archive: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            links = {}
            for info in members:
                pure = _check_member(archive, info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    target = zf.read(info).decode("utf-8", "replace")
                    _check_link(archive, pure, target)
                    links[info.filename] = target
            for info in members:
                if info.filename in links:
                    path = into / info.filename
                    path.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(links[info.filename], path)
                else:
                    zf.extract(info, into)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise DownloadError(f"{archive}: corrupt zip archive ({exc})") from None


def _extract_tar(archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                pure = _check_member(archive, member.name)
                if member.issym() or member.islnk():
                    target = member.linkname
                    if member.islnk():
                        _check_member(archive, target)
                    else:
                        _check_link(archive, pure, target)
                elif not (member.isfile() or member.isdir()):
                    raise DownloadError(f"{archive}: refused member {member.name!r} (not a file)")
            # The 'data' filter repeats these checks inside tarfile and drops odd permissions.
            tf.extractall(into, filter="data")
    except (tarfile.TarError, EOFError) as exc:
        raise DownloadError(f"{archive}: corrupt tar archive ({exc})") from None


def extract(archive: Path, target: Path, overwrite: bool = False) -> Path:
    """Extract ``archive`` so the product ends up as the folder ``target``; return ``target``.

    An archive with one top-level folder has that folder renamed to ``target`` (a ``.SAFE``
    zip, a Landsat product folder); loose members are put inside ``target``.
    """
    if target.exists() and not overwrite:
        return target
    tmp = staging_dir(target)
    staged = temporary(target, ".staged")
    try:
        if archive_kind(archive) == "zip":
            _extract_zip(archive, tmp)
        else:
            _extract_tar(archive, tmp)
        entries = list(tmp.iterdir())
        if not entries:
            raise DownloadError(f"{archive}: the archive is empty")
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        if root is tmp:
            os.replace(tmp, staged)
        else:
            if staged.exists():
                shutil.rmtree(staged)
            os.replace(root, staged)
        replace_dir(staged, target)
    finally:
        for leftover in (tmp, staged):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
    return target
