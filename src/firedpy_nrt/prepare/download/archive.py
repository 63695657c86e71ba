"""Safe extraction of a product archive (zip or tar) into its product folder.

Every member is checked before anything is written: absolute paths, ``..``, and links of any
kind (symbolic or hard: Sentinel-2 and Landsat products contain none, and a chain of harmless-
looking links can point anywhere) are refused, and each member's path is resolved inside the
folder. The total size the archive declares and its compression ratio are bounded
(``download.max_extract_gb``, ``download.max_compression_ratio``), and so are the bytes actually
written while extracting, so an archive that lies about its sizes is cut off too. Extraction goes
to a hidden temporary folder that is renamed into place at the end, so a folder under its product
name is always complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from firedpy_nrt.atomic import replace_dir, staging_dir, temporary
from firedpy_nrt.errors import DownloadError

log = logging.getLogger(__name__)
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExtractLimits:
    """Bounds on what one archive may extract to."""

    max_bytes: int
    max_ratio: float
    #: Members at most: a product has a few hundred files; millions of empty ones are a bomb
    #: of another kind (inodes, time), whatever their bytes.
    max_members: int = 20_000


def archive_kind(path: Path) -> str:
    """``zip`` or ``tar`` from the file's content (the name may not say)."""
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise DownloadError(f"{path}: neither a zip nor a tar archive")


def _member_path(archive: Path, name: str, into: Path) -> Path:
    """Where member ``name`` goes under ``into``; refused unless it stays inside."""
    clean = name.replace("\\", "/")
    pure = PurePosixPath(clean)
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":") or pure.is_absolute():
        raise DownloadError(f"{archive}: refused member {name!r} (absolute path)")
    if ".." in pure.parts:
        raise DownloadError(f"{archive}: refused member {name!r} (leaves the product folder)")
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts:
        raise DownloadError(f"{archive}: refused member {name!r} (no name)")
    path = into.joinpath(*parts)
    root = into.resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise DownloadError(f"{archive}: refused member {name!r} (resolves outside the folder)")
    return path


class _Budget:
    """Bytes written so far against the limit; names the archive when it is exceeded."""

    def __init__(self, archive: Path, limits: ExtractLimits, compressed: int) -> None:
        self.archive = archive
        self.limit = min(limits.max_bytes, int(max(compressed, 1) * limits.max_ratio))
        self.limits = limits
        self.compressed = compressed
        self.written = 0

    def check_declared(self, total: int) -> None:
        if total > self.limits.max_bytes:
            raise self._error(f"declares {total} bytes, over download.max_extract_gb")
        if total > max(self.compressed, 1) * self.limits.max_ratio:
            raise self._error(
                f"declares {total} bytes from {self.compressed} compressed, a ratio over "
                f"download.max_compression_ratio={self.limits.max_ratio:g}"
            )

    def add(self, n: int) -> None:
        self.written += n
        if self.written > self.limit:
            raise self._error(
                f"extracts to more than {self.limit} bytes (download.max_extract_gb, "
                "download.max_compression_ratio); refused as an archive bomb"
            )

    def _error(self, what: str) -> DownloadError:
        return DownloadError(f"{self.archive}: the archive {what}")


def _copy(src: IO[bytes], dest: Path, budget: _Budget) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "xb") as out:
        while chunk := src.read(_COPY_CHUNK):
            budget.add(len(chunk))
            out.write(chunk)


@dataclass(frozen=True)
class _Member:
    """One archive member, whatever the format: its name, kind, declared size and opener."""

    name: str
    kind: str  # file, dir, symlink, hardlink or other
    size: int
    open: Callable[[], IO[bytes] | None]


def _write_members(
    archive: Path, into: Path, limits: ExtractLimits, members: list[_Member]
) -> None:
    """Check every member (no links, nothing outside ``into``, sizes within the limits) before
    writing any, then write them while counting the bytes."""
    if len(members) > limits.max_members:
        raise DownloadError(
            f"{archive}: the archive has {len(members)} members, more than a product has "
            f"({limits.max_members}); refused as an archive bomb"
        )
    targets = []
    for m in members:
        if m.kind in ("symlink", "hardlink"):
            kind = "a symbolic link" if m.kind == "symlink" else "a hard link"
            raise DownloadError(
                f"{archive}: refused member {m.name!r} ({kind}; product archives contain no links)"
            )
        if m.kind == "other":
            raise DownloadError(f"{archive}: refused member {m.name!r} (not a file)")
        targets.append(_member_path(archive, m.name, into))
    budget = _Budget(archive, limits, archive.stat().st_size)
    budget.check_declared(sum(m.size for m in members if m.kind == "file"))
    for m, path in zip(members, targets, strict=True):
        if m.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
            continue
        src = m.open()
        if src is None:
            raise DownloadError(f"{archive}: member {m.name!r} cannot be read")
        with src:
            try:
                _copy(src, path, budget)
            except FileExistsError:
                raise DownloadError(f"{archive}: member {m.name!r} appears twice") from None


def _zip_kind(info: zipfile.ZipInfo) -> str:
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver set no type
    if kind == stat.S_IFLNK:
        return "symlink"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "other"
    return "dir" if info.is_dir() else "file"


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    return "file" if member.isfile() else "dir" if member.isdir() else "other"


def _extract_zip(archive: Path, into: Path, limits: ExtractLimits) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [
                _Member(i.filename, _zip_kind(i), i.file_size, lambda i=i: zf.open(i))
                for i in zf.infolist()
            ]
            _write_members(archive, into, limits, members)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise DownloadError(f"{archive}: corrupt zip archive ({exc})") from None


def _extract_tar(archive: Path, into: Path, limits: ExtractLimits) -> None:
    try:
        with tarfile.open(archive) as tf:
            members = [
                _Member(m.name, _tar_kind(m), m.size, lambda m=m: tf.extractfile(m))
                for m in tf.getmembers()
            ]
            _write_members(archive, into, limits, members)
    except (tarfile.TarError, EOFError) as exc:
        raise DownloadError(f"{archive}: corrupt tar archive ({exc})") from None


def extract(
    archive: Path, target: Path, overwrite: bool = False, limits: ExtractLimits | None = None
) -> Path:
    """Extract ``archive`` so the product ends up as the folder ``target``; return ``target``.

    An archive with one top-level folder has that folder renamed to ``target`` (a ``.SAFE``
    zip, a Landsat product folder); loose members are put inside ``target``.
    """
    if target.exists() and not overwrite:
        return target
    tmp = staging_dir(target)
    staged = temporary(target, ".staged")
    try:
        limits = limits or ExtractLimits(max_bytes=2 << 30, max_ratio=100.0)
        if archive_kind(archive) == "zip":
            _extract_zip(archive, tmp, limits)
        else:
            _extract_tar(archive, tmp, limits)
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
