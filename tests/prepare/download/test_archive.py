"""Safe extraction: members that would leave the product folder are refused before writing."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import pytest

from firedpy_nrt.errors import DownloadError
from firedpy_nrt.prepare.download.archive import ExtractLimits, extract


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


def test_even_an_in_folder_link_is_refused(tmp_path):
    """Products contain no links, and a link that looks harmless can be one step of a chain."""
    archive = _tar(tmp_path / "p.tar", {"P/a.TIF": b"a"}, links=[("P/b.TIF", "a.TIF")])
    with pytest.raises(DownloadError, match="refused member 'P/b.TIF' .a symbolic link"):
        extract(archive, tmp_path / "P")
    _nothing_left(tmp_path, tmp_path / "P")


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
    with pytest.raises(DownloadError, match="refused member 'P/link' .a symbolic link"):
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


# A chain of links each harmless on its own: a/b/c/d -> ../../.., e -> a/b/c/d/../../../..,
# then e/X.txt: followed, X.txt lands two levels above the product folder.
CHAIN = [("P/a/b/c/d", "../../.."), ("P/e", "a/b/c/d/../../../.."), ("P/f", "e")]


def _zip_with_links(path, members, links):
    with zipfile.ZipFile(path, "w") as zf:
        for name, target in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_symlink_chains_are_refused_and_nothing_escapes(tmp_path, kind):
    folder = tmp_path / "data" / "scenes" / "1" / "sentinel"
    folder.mkdir(parents=True)
    members = {"P/ok.txt": b"ok", "P/e/X.txt": b"escaped", "P/f/Y.txt": b"escaped"}
    if kind == "zip":
        archive = _zip_with_links(folder / "p.zip", members, CHAIN)
    else:
        archive = _tar(folder / "p.tar", members, links=CHAIN)
    with pytest.raises(DownloadError, match="refused member .* link"):
        extract(archive, folder / "P")
    assert not list(tmp_path.rglob("X.txt")) and not list(tmp_path.rglob("Y.txt"))
    _nothing_left(folder, folder / "P")


def test_tar_hard_link_is_refused(tmp_path):
    path = tmp_path / "p.tar"
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("P/a.TIF")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"a"))
        link = tarfile.TarInfo("P/b.TIF")
        link.type = tarfile.LNKTYPE
        link.linkname = "P/a.TIF"
        tf.addfile(link)
    with pytest.raises(DownloadError, match="refused member 'P/b.TIF' .a hard link"):
        extract(path, tmp_path / "P")
    _nothing_left(tmp_path, tmp_path / "P")


def _bomb(path, kind, size):
    """One member of ``size`` zero bytes, compressed (a few kB for megabytes)."""
    data = bytes(size)
    if kind == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("P/ok.txt", b"ok")
            zf.writestr("P/zeros.bin", data)
    else:
        with tarfile.open(path, "w:gz") as tf:
            info = tarfile.TarInfo("P/zeros.bin")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_compression_bomb_is_refused_naming_the_archive(tmp_path, kind):
    archive = _bomb(tmp_path / f"p.{kind}", kind, 8 << 20)  # 8 MB of zeros in a few kB
    assert archive.stat().st_size < 100_000
    with pytest.raises(DownloadError, match=rf"p\.{kind}: the archive declares .*ratio"):
        extract(archive, tmp_path / "P", limits=ExtractLimits(max_bytes=1 << 30, max_ratio=100))
    _nothing_left(tmp_path, tmp_path / "P")
    # a plain size bound too, whatever the ratio
    with pytest.raises(DownloadError, match="over download.max_extract_gb"):
        extract(archive, tmp_path / "P", limits=ExtractLimits(max_bytes=1 << 20, max_ratio=1e9))
    # within both bounds it extracts
    extract(archive, tmp_path / "P", limits=ExtractLimits(max_bytes=1 << 30, max_ratio=1e9))
    assert (tmp_path / "P" / "zeros.bin").stat().st_size == 8 << 20


def test_a_zip_that_lies_about_its_sizes_writes_no_more_than_it_declares(tmp_path):
    """A member whose directory entry declares 10 bytes but holds megabytes: reading stops at
    the declared size and the checksum fails, so nothing large is ever written."""
    archive = _bomb(tmp_path / "p.zip", "zip", 4 << 20)
    raw = bytearray(archive.read_bytes())
    entry = raw.rfind(b"PK\x01\x02")  # the last central-directory entry: P/zeros.bin
    assert raw[entry + 46 : entry + 46 + 11] == b"P/zeros.bin"
    raw[entry + 24 : entry + 28] = (10).to_bytes(4, "little")  # its uncompressed size
    archive.write_bytes(bytes(raw))
    limits = ExtractLimits(max_bytes=1 << 30, max_ratio=1e9)
    with pytest.raises(DownloadError, match=r"p\.zip: corrupt zip archive"):
        extract(archive, tmp_path / "P", limits=limits)
    assert not (tmp_path / "P").exists()
    assert sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file()) < 100_000


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_an_archive_of_too_many_members_is_refused(tmp_path, kind):
    members = {f"P/f{i}.txt": b"" for i in range(60)}
    archive = (
        _zip(tmp_path / "p.zip", members) if kind == "zip" else _tar(tmp_path / "p.tar", members)
    )
    limits = ExtractLimits(max_bytes=1 << 30, max_ratio=1e9, max_members=50)
    with pytest.raises(DownloadError, match="61 members|60 members"):
        extract(archive, tmp_path / "P", limits=limits)
    _nothing_left(tmp_path, tmp_path / "P")
