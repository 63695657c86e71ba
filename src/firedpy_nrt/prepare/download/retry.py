"""When and how long to wait before trying a request again (backoff, Retry-After)."""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3

from firedpy_nrt.errors import DownloadError
from firedpy_nrt.prepare.download.credentials import scrub

log = logging.getLogger(__name__)

#: Statuses worth another try: rate limit, and a server or gateway that is briefly unwell.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: Statuses whose Retry-After header we honour.
RETRY_AFTER_STATUS = frozenset({429, 503})
#: Exceptions of a connection that failed or dropped; the request can be sent again.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    # raised by reading the raw stream (ProtocolError, IncompleteRead, ReadTimeoutError)
    urllib3.exceptions.HTTPError,
)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def describe_error(exc: BaseException) -> str:
    """A short, credential-free reason for a failed connection (no URL, no request body)."""
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if match:
        return match.group(0).strip()
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection dropped mid-transfer"
    for reason in ("Connection refused", "Connection reset", "Name or service not known"):
        if reason in text:
            return reason
    return type(exc).__name__


@dataclass
class RetryPolicy:
    """Exponential backoff capped at ``backoff_max_s``; Retry-After honoured up to its own cap."""

    retries: int = 5
    backoff_s: float = 2.0
    backoff_max_s: float = 120.0
    retry_after_max_s: float = 900.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def backoff(self, attempt: int) -> float:
        """Wait before try ``attempt + 1`` (``attempt`` >= 1), with up to 10% jitter."""
        base = min(self.backoff_max_s, self.backoff_s * (2 ** max(0, attempt - 1)))
        return base * (1.0 + 0.1 * random.random()) if base else 0.0

    def wait(self, attempt: int, response: requests.Response | None = None) -> float:
        """Seconds to wait after failed try ``attempt``: Retry-After on 429/503, else backoff."""
        if response is not None and response.status_code in RETRY_AFTER_STATUS:
            asked = retry_after_seconds(response.headers.get("Retry-After"))
            if asked is not None:
                return min(asked, self.retry_after_max_s)
        return self.backoff(attempt)


def send(
    session: requests.Session,
    method: str,
    url: str,
    policy: RetryPolicy,
    what: str,
    **kwargs: Any,
) -> requests.Response:
    """Send a request, retrying connection failures and transient statuses; return the response.

    A response with a non-transient status is returned for the caller to judge. Giving up raises
    a one-line DownloadError naming ``what`` and the URL (never the request's body or headers).
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            response = session.request(method, url, **kwargs)
        except CONNECTION_ERRORS as exc:
            reason = describe_error(exc)
            if attempt > policy.retries:
                raise DownloadError(
                    scrub(f"{what}: cannot reach {url} ({reason}, {attempt} tries)")
                ) from None
            delay = policy.backoff(attempt)
            log.warning("%s: %s (%s); retrying in %.1f s", what, url, reason, delay)
            policy.sleep(delay)
            continue
        if response.status_code not in TRANSIENT_STATUS:
            return response
        if attempt > policy.retries:
            raise DownloadError(
                f"{what}: {url} answered HTTP {response.status_code} ({attempt} tries)"
            )
        delay = policy.wait(attempt, response)
        response.close()
        log.warning(
            "%s: HTTP %s from %s; retrying in %.1f s", what, response.status_code, url, delay
        )
        policy.sleep(delay)
