"""Streamed, resumable, verified download of one file.

The bytes go to ``<dest>.part``; a dropped connection resumes with an HTTP ``Range`` request;
the finished file is checked against its size and MD5 and only then renamed to ``dest``. A file
that fails its checksum is deleted and fetched again. Redirects are followed by hand so the
Authorization header goes only to hosts the authenticator trusts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urljoin, urlparse

import requests
from tqdm import tqdm

from firedpy_nrt.config.download import DownloadConfig
from firedpy_nrt.errors import CredentialsError, DownloadError
from firedpy_nrt.prepare.download.credentials import scrub
from firedpy_nrt.prepare.download.product import Product
from firedpy_nrt.prepare.download.retry import (
    CONNECTION_ERRORS,
    TRANSIENT_STATUS,
    RetryPolicy,
    describe_error,
)

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class Authenticator(Protocol):
    """Adds credentials to requests for hosts it trusts; reacts to a rejected credential."""

    def headers(self, url: str) -> dict[str, str]:
        """Headers to send to ``url`` (empty for a host that must not see the credential)."""
        ...

    def unauthorized(self, sent: dict[str, str]) -> None:
        """The server said 401 to ``sent``: renew the credential, or raise CredentialsError."""
        ...


class NoAuth:
    def headers(self, url: str) -> dict[str, str]:
        return {}

    def unauthorized(self, sent: dict[str, str]) -> None:
        raise CredentialsError("the server asked for credentials")


@dataclass
class TransferSettings:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    connect_timeout_s: float = 30.0
    read_timeout_s: float = 300.0
    chunk_bytes: int = 1 << 20
    progress: bool = True
    #: Average bytes/s a transfer must keep after ``min_rate_grace_s`` (0: no bound); a server
    #: that trickles bytes would otherwise hold a transfer forever (each read is on time).
    min_rate_bps: float = 8000.0
    min_rate_grace_s: float = 60.0

    @classmethod
    def of(cls, dl: DownloadConfig) -> TransferSettings:
        """The ``download.*`` transfer keys (retries, timeouts, rate bound, progress)."""
        return cls(
            RetryPolicy(dl.retries, dl.backoff_s, dl.backoff_max_s, dl.retry_after_max_s),
            dl.connect_timeout_s,
            dl.read_timeout_s,
            dl.chunk_bytes,
            dl.progress,
            min_rate_bps=dl.min_rate_kbps * 1000,
            min_rate_grace_s=dl.min_rate_grace_s,
        )


class TryAgain(Exception):
    """One try failed in a way another try may fix."""

    def __init__(self, reason: str, response: requests.Response | None = None, counts=True):
        super().__init__(reason)
        self.reason = reason
        self.response = response
        self.counts = counts


def as_sent(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """A requests ``auth`` that adds nothing (and so keeps requests from adding netrc auth)."""
    return request


def plain_session() -> requests.Session:
    """A session that sends exactly the headers it is given: requests would otherwise add a
    ``~/.netrc`` password (HTTP Basic) to any host the file names, replacing our header.
    Proxies from the environment still apply."""
    session = requests.Session()
    session.auth = as_sent
    return session


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def download(
    session: requests.Session,
    url: str,
    dest: Path,
    *,
    auth: Authenticator | None = None,
    size: int | None = None,
    md5: str | None = None,
    settings: TransferSettings | None = None,
    label: str = "",
) -> None:
    """Fetch ``url`` into ``dest``: resume ``dest.part`` if there, verify, rename.

    Raises DownloadError (one line, naming ``label`` and the last reason) when the retries are
    spent; a part file that holds correct bytes so far is kept for the next run to resume.
    """
    auth = auth or NoAuth()
    settings = settings or TransferSettings()
    policy = settings.policy
    label = label or dest.name
    part = part_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    refreshed = 0
    while True:
        try:
            offset = part.stat().st_size if part.exists() else 0
            if size is not None and offset > size:
                part.unlink()
                offset = 0
            if size is None or offset < size:
                served = _fetch_once(session, url, part, offset, size, auth, settings, label)
                if served is not None and served != size:
                    # The catalogue's size is a hint; the MD5 is what proves the file.
                    if size is not None:
                        log.warning(
                            "%s: the server sends %d bytes, the catalogue said %d",
                            label,
                            served,
                            size,
                        )
                    size = served
            _verify(part, size, md5)
            os.replace(part, dest)
            return
        except TryAgain as exc:
            response = exc.response
            if response is not None and response.status_code == 401:
                refreshed += 1
                if refreshed > 2:
                    raise CredentialsError(
                        f"{label}: the server keeps refusing the credentials (HTTP 401)"
                    ) from None
                continue
            refreshed = 0
            if exc.counts:
                failures += 1
            if failures > policy.retries:
                raise DownloadError(
                    scrub(f"{label}: {exc.reason} (gave up after {failures} failed tries)")
                ) from None
            delay = policy.wait(max(failures, 1), response)
            log.warning("%s: %s; retrying in %.1f s", label, exc.reason, delay)
            policy.sleep(delay)


def _verify(part: Path, size: int | None, md5: str | None) -> None:
    got_size = part.stat().st_size
    if size is not None and got_size != size:
        raise TryAgain(f"incomplete file ({got_size} of {size} bytes)")
    if md5:
        got = file_md5(part)
        if got.lower() != md5.lower():
            part.unlink()
            raise TryAgain(f"checksum mismatch (MD5 {got}, expected {md5.lower()})")


def get_following_redirects(
    session: requests.Session,
    url: str,
    auth: Authenticator,
    settings: TransferSettings,
    *,
    offset: int = 0,
    end: int | None = None,
) -> tuple[requests.Response, dict[str, str], str]:
    """GET ``url`` (streamed) following redirects by hand, so credentials only go where
    ``auth`` says; bytes from ``offset`` (to ``end`` inclusive, if given). Returns the response,
    the credential headers sent with it and the URL that answered."""
    timeout = (settings.connect_timeout_s, settings.read_timeout_s)
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        sent = auth.headers(current)
        headers = dict(sent)
        if offset or end is not None:
            headers["Range"] = f"bytes={offset}-{'' if end is None else end}"
        headers["Accept-Encoding"] = "identity"
        try:
            response = session.get(
                current, headers=headers, stream=True, allow_redirects=False, timeout=timeout
            )
        except CONNECTION_ERRORS as exc:
            raise TryAgain(f"cannot reach {origin(current)} ({describe_error(exc)})") from None
        if response.is_redirect and "Location" in response.headers:
            current = urljoin(current, response.headers["Location"])
            response.close()
            continue
        return response, sent, current
    raise TryAgain(f"more than {MAX_REDIRECTS} redirects from {origin(url)}")


def _bar_slot() -> int:
    """A line per download worker, so concurrent progress bars do not overwrite each other."""
    match = re.search(r"_(\d+)$", threading.current_thread().name)
    return int(match.group(1)) if match else 0


def _stream(response: requests.Response, size: int) -> Iterator[bytes]:
    """The body as it arrives: ``read1`` hands over what came before a drop, where
    ``iter_content`` would lose the last partial chunk."""
    raw = response.raw
    read = getattr(raw, "read1", None) or raw.read
    while block := read(size, decode_content=False):
        yield block


def bare_url(url: str) -> str:
    """``url`` without user info or query (a redirect target may carry a signed token)."""
    parsed = urlparse(url)
    return f"{origin(url)}{parsed.path}"


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` (lower case): what a credential is trusted with."""
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.hostname or ''}{f':{parsed.port}' if parsed.port else ''}"


def _fetch_once(
    session: requests.Session,
    url: str,
    part: Path,
    offset: int,
    size: int | None,
    auth: Authenticator,
    settings: TransferSettings,
    label: str,
) -> int | None:
    """One GET from ``offset``; return the file's full size as the server states it."""
    response, sent, where = get_following_redirects(session, url, auth, settings, offset=offset)
    with response:
        status = response.status_code
        if status in (401, 403) and sent:
            auth.unauthorized(sent)
            raise TryAgain(f"HTTP {status} from {origin(where)}", response)
        if status in TRANSIENT_STATUS:
            raise TryAgain(f"HTTP {status} from {origin(where)}", response)
        if status == 416:
            # Range past the end: our part file is longer than the server's file. Start over.
            part.unlink(missing_ok=True)
            raise TryAgain("the server refused to resume (HTTP 416)", counts=False)
        if status not in (200, 206):
            raise DownloadError(f"{label}: HTTP {status} from {bare_url(where)}")
        mode = "ab"
        served: int | None = None
        length = response.headers.get("Content-Length", "")
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise TryAgain("the server resumed at the wrong byte", counts=False)
            served = int(match.group(3)) if match.group(3).isdigit() else None
        else:
            if offset:
                log.info("%s: the server ignored the Range request; starting again", label)
                offset, mode = 0, "wb"
            served = int(length) if length.isdigit() else None
        total = served if served is not None else size
        received = 0
        with (
            open(part, mode) as handle,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label[-60:],
                disable=not settings.progress,
                leave=False,
                position=_bar_slot(),
            ) as bar,
        ):
            started = time.monotonic()
            try:
                for chunk in _stream(response, settings.chunk_bytes):
                    handle.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    _check_rate(received, time.monotonic() - started, settings, where)
            except CONNECTION_ERRORS as exc:
                handle.flush()
                raise TryAgain(
                    f"connection dropped at byte {offset + received} ({describe_error(exc)})",
                    counts=received == 0,
                ) from None
        return served


def _check_rate(received: int, elapsed: float, settings: TransferSettings, where: str) -> None:
    """Cut off a transfer that stays below the minimum average rate after the grace time."""
    if settings.min_rate_bps <= 0 or elapsed <= settings.min_rate_grace_s:
        return
    if received < settings.min_rate_bps * elapsed:
        raise TryAgain(
            f"transfer from {origin(where)} too slow: {received} bytes in {elapsed:.0f} s "
            f"(below download.min_rate_kbps={settings.min_rate_bps / 1000:g})"
        )


def download_product(
    product: Product,
    dest: Path,
    *,
    auth: Authenticator | None,
    settings: TransferSettings | None,
    offline_reason: str,
) -> None:
    """Fetch one catalogue product into ``dest`` (size and MD5 from the catalogue), if online."""
    if not product.online:
        raise DownloadError(f"{product.name}: the product is offline ({offline_reason})")
    with plain_session() as session:
        download(
            session,
            product.url,
            dest,
            auth=auth,
            size=product.size,
            md5=product.md5,
            settings=settings,
            label=product.name,
        )
