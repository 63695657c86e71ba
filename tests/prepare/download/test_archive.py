"""Safe extraction: members that would leave the product folder are refused before writing."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from firedpy_nrt.errors import DownloadError
from firedpy_nrt.prepare.download.archive import extract


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path, members, links=()):
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return path


def _nothing_left(folder, target):
    assert not target.exists()
    assert sorted(p.name for p in folder.iterdir()) == [
        "p.tar" if (folder / "p.tar").exists() else "p.zip"
    ]


def test_zip_with_one_safe_folder_becomes_the_product(tmp_path):
    archive = _zip(tmp_path / "p.zip", {"X.SAFE/manifest.safe": b"m", "X.SAFE/GRANULE/b.jp2": b"b"})
    target = extract(archive, tmp_path / "X.SAFE")
    assert (target / "manifest.safe").read_bytes() == b"m"
    assert (target / "GRANULE" / "b.jp2").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X.SAFE", "p.zip"]


def test_tar_with_loose_files_goes_inside_the_folder(tmp_path):
    archive = _tar(tmp_path / "p.tar", {"LC08_SR_B5.TIF": b"5", "LC08_MTL.xml": b"x"})
    target = extract(archive, tmp_path / "LC08")
    assert sorted(p.name for p in target.iterdir()) == ["LC08_MTL.xml", "LC08_SR_B5.TIF"]


def test_tar_with_in_folder_link_is_kept(tmp_path):
    archive = _tar(tmp_path / "p.tar", {"P/a.TIF": b"a"}, links=[("P/b.TIF", "a.TIF")])
    target = extract(archive, tmp_path / "P")
    assert (target / "b.TIF").is_symlink() and (target / "b.TIF").read_bytes() == b"a"


@pytest.mark.parametrize(
    "name",
    ["../evil.txt", "X.SAFE/../../evil.txt", "/tmp/evil.txt", "X.SAFE\\..\\..\\evil.txt"],
)
def test_zip_member_outside_is_refused_and_nothing_written(tmp_path, name):
    folder = tmp_path / "scenes"
    folder.mkdir()
    archive = _zip(folder / "p.zip", {"X.SAFE/manifest.safe": b"m", name: b"evil"})
    with pytest.raises(DownloadError, match="refused member"):
        extract(archive, folder / "X.SAFE")
    _nothing_left(folder, folder / "X.SAFE")
    assert not list(tmp_path.rglob("evil.txt"))


@pytest.mark.parametrize("target", ["../../outside", "/etc/passwd", "a/../../../x"])
def test_tar_symlink_pointing_out_is_refused(tmp_path, target):
    folder = tmp_path / "scenes"
    folder.mkdir()
    archive = _tar(folder / "p.tar", {"P/a.TIF": b"a"}, links=[("P/link", target)])
    with pytest.raises(DownloadError, match="refused link"):
        extract(archive, folder / "P")
    _nothing_left(folder, folder / "P")


def test_corrupt_archive_is_a_download_error(tmp_path):
    archive = tmp_path / "p.zip"
    archive.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DownloadError, match="p.zip"):
        extract(archive, tmp_path / "X.SAFE")
    assert not (tmp_path / "X.SAFE").exists()


def test_existing_folder_is_kept_unless_overwrite(tmp_path):
    archive = _zip(tmp_path / "p.zip", {"X.SAFE/new.txt": b"new"})
    (tmp_path / "X.SAFE").mkdir()
    (tmp_path / "X.SAFE" / "old.txt").write_text("old")
    extract(archive, tmp_path / "X.SAFE")
    assert (tmp_path / "X.SAFE" / "old.txt").exists()
    extract(archive, tmp_path / "X.SAFE", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "X.SAFE").iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X.SAFE", "p.zip"]
