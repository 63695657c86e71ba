"""Open a remote Cloud-Optimized GeoTIFF and read only the bytes a window needs.

GDAL reads through :class:`RangeFile`, a Python file whose reads become HTTP ``Range``
requests (cached in aligned blocks). Redirects are followed by hand so the credential goes only
where the authenticator trusts: ASF's data pool redirects to a pre-signed S3 URL that must get
no ``Authorization`` header. The resolved URL is reused for the following reads, and resolved
again once if it stops answering (a pre-signed URL expires).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from typing import NoReturn
from urllib.parse import urlparse

import rasterio
import requests
from rasterio.abc import FileContainer
from rasterio.errors import RasterioError

from firedpy_nrt.errors import CredentialsError, DataError, DownloadError, FiredpyError, first_line
from firedpy_nrt.prepare.download.retry import TRANSIENT_STATUS
from firedpy_nrt.prepare.download.transfer import (
    Authenticator,
    TransferSettings,
    TryAgain,
    bare_url,
    get_following_redirects,
)

BLOCK = 1 << 18  # 256 KiB: a COG header in one read, a tile or two per block
#: A server that ignores Range sends the whole file: kept in memory up to this size.
WHOLE_FILE_MAX = 1 << 29
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class RangeReader:
    """Byte ranges of one remote file, with the credential only where ``auth`` trusts."""

    def __init__(
        self,
        session: requests.Session,
        url: str,
        auth: Authenticator,
        settings: TransferSettings,
        label: str,
    ) -> None:
        self.session = session
        self.url = url
        self.auth = auth
        self.settings = settings
        self.label = label
        self._resolved: str | None = None
        self._size: int | None = None
        self._blocks: dict[int, bytes] = {}
        #: The error that stopped a read. GDAL only sees a short read and reports a format
        #: error; :func:`open_remote` raises this instead, which names the server and status.
        self.error: FiredpyError | None = None

    # -- HTTP ---------------------------------------------------------------------------------
    def _get(self, start: int, end: int) -> tuple[bytes, int]:
        """Bytes ``start..end`` (inclusive) and the file's total size."""
        policy = self.settings.policy
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._get_once(start, end)
            except TryAgain as exc:
                if attempt > policy.retries:
                    raise DownloadError(f"{self.label}: {exc} ({attempt} tries)") from None
                policy.sleep(policy.wait(attempt, exc.response))

    def _get_once(self, start: int, end: int) -> tuple[bytes, int]:
        response, sent, current = get_following_redirects(
            self.session,
            self._resolved or self.url,
            self.auth,
            self.settings,
            offset=start,
            end=end,
        )
        with response:
            status = response.status_code
            if status in (401, 403) and sent:
                self.auth.unauthorized(sent)
                raise CredentialsError(f"{self.label}: HTTP {status} from {bare_url(current)}")
            if status in (401, 403) and self._resolved:
                self._resolved = None  # the pre-signed URL expired: resolve again
                raise TryAgain(f"HTTP {status} from {bare_url(current)}", response)
            if status in TRANSIENT_STATUS:
                raise TryAgain(f"HTTP {status} from {bare_url(current)}", response)
            if status == 200:
                return self._whole(response, current)
            if status != 206:
                raise DownloadError(f"{self.label}: HTTP {status} from {bare_url(current)}")
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != start:
                raise DownloadError(
                    f"{self.label}: {bare_url(current)} answered another byte range than asked"
                )
            body = response.content
        total = int(match.group(3))
        want = min(end, total - 1) - start + 1
        if len(body) != want:
            raise TryAgain(f"short read from {bare_url(current)} ({len(body)} of {want} bytes)")
        self._resolved = current
        return body, total

    def _whole(self, response: requests.Response, where: str) -> tuple[bytes, int]:
        """A 200 answer (Range ignored): keep the whole file as blocks, if it is not huge."""
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > WHOLE_FILE_MAX:
            raise DownloadError(
                f"{self.label}: {bare_url(where)} ignores range requests and the file is "
                f"{int(length) / 2**20:.0f} MiB"
            )
        body = response.content
        if length.isdigit() and len(body) != int(length):
            raise TryAgain(f"short read from {bare_url(where)} ({len(body)} of {length} bytes)")
        self._blocks = {b: body[b * BLOCK : (b + 1) * BLOCK] for b in range(len(body) // BLOCK + 1)}
        self._size = len(body)
        self._resolved = where
        return body, len(body)

    # -- file interface ------------------------------------------------------------------------
    def size(self) -> int:
        if self._size is None:
            body, size = self._get(0, BLOCK - 1)
            if self._size is None:  # a ranged answer (a whole-file one filled everything)
                self._size = size
                self._blocks[0] = body
        return self._size

    def safe_size(self) -> int:
        """The size, or 0 once a read has failed (the error is kept in ``self.error``)."""
        if self.error is not None:
            return 0
        try:
            return self.size()
        except FiredpyError as exc:
            self.error = exc
            return 0

    def read(self, offset: int, length: int) -> bytes:
        size = self.size()
        end = min(offset + length, size)
        if end <= offset:
            return b""
        first, last = offset // BLOCK, (end - 1) // BLOCK
        missing = [b for b in range(first, last + 1) if b not in self._blocks]
        if missing:
            lo, hi = missing[0], missing[-1]  # one request for the whole missing run
            body, _ = self._get(lo * BLOCK, min((hi + 1) * BLOCK, size) - 1)
            if any(b not in self._blocks for b in range(lo, hi + 1)):  # not a whole-file answer
                for b in range(lo, hi + 1):
                    self._blocks[b] = body[(b - lo) * BLOCK : (b - lo + 1) * BLOCK]
        data = b"".join(self._blocks[b] for b in range(first, last + 1))
        skip = offset - first * BLOCK
        return data[skip : skip + (end - offset)]


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over a :class:`RangeReader` (what GDAL reads through)."""

    def __init__(self, reader: RangeReader) -> None:
        self.reader = reader
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            base = self.reader.safe_size()
        else:
            base = 0 if whence == io.SEEK_SET else self.pos
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int = -1) -> bytes:
        # An exception would cross GDAL's C code; the reader keeps it for open_remote instead.
        if self.reader.error is not None:
            return b""
        try:
            if size is None or size < 0:
                size = self.reader.size() - self.pos
            data = self.reader.read(self.pos, size)
        except FiredpyError as exc:
            self.reader.error = exc
            return b""
        self.pos += len(data)
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Container(FileContainer):
    """rasterio's opener interface over one remote file."""

    def __init__(self, reader: RangeReader) -> None:
        self.reader = reader

    def open(self, path: str, mode: str = "rb", **kwargs: object) -> RangeFile:
        return RangeFile(self.reader)

    def isfile(self, path: str) -> bool:
        return True

    def isdir(self, path: str) -> bool:
        return False

    def ls(self, path: str) -> list[str]:
        return []

    def mtime(self, path: str) -> int:
        return 0

    def size(self, path: str) -> int:
        return self.reader.safe_size()

    def rm(self, path: str) -> None:
        raise OSError("read-only remote file")


def raise_read_error(readers: list[RangeReader], exc: RasterioError) -> NoReturn:
    """Raise the HTTP error behind GDAL's ``exc`` if a reader had one, else a DataError."""
    for reader in readers:
        if reader.error is not None:
            raise reader.error
    raise DataError(f"cannot read a remote raster ({first_line(exc)})") from None


@contextlib.contextmanager
def open_remote(reader: RangeReader) -> Iterator[rasterio.io.DatasetReader]:
    """The remote raster as a rasterio dataset (GeoTIFF only: no sidecar files are looked for).
    A failed HTTP read is raised as itself (naming the server), a bad file as a DataError."""
    # A name of its own per reader: rasterio keeps one opener per (name, mode).
    name = f"/{id(reader):x}/" + urlparse(reader.url).path.rsplit("/", 1)[-1]
    try:
        with (
            rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
            rasterio.open(name, driver="GTiff", opener=_Container(reader)) as src,
        ):
            yield src
    except RasterioError as exc:
        if reader.error is not None:
            raise reader.error from None
        raise DataError(f"{reader.label}: not a readable GeoTIFF ({first_line(exc)})") from None
