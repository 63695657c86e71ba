"""NASA Earthdata Login: one bearer token, sent only where it belongs.

The token comes from ``EARTHDATA_TOKEN`` (used as is), else from ``EARTHDATA_USERNAME`` and
``EARTHDATA_PASSWORD`` exchanged at ``{sar.edl_url}/api/users/find_or_create_token`` (HTTP
Basic), else from the ``~/.netrc`` entry of that host. The password goes only to
``sar.edl_url``. The token goes only to the origins :class:`EarthdataAuth` is told to trust
(HyP3's API and the data URLs the search returned), never across a redirect to another host:
ASF's data pool answers with a redirect to a pre-signed S3 URL, which refuses a second
credential.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import parse_qs, urlparse

import requests

from firedpy_nrt.errors import CredentialsError, DownloadError
from firedpy_nrt.prepare.download.credentials import SECRETS, load_credentials
from firedpy_nrt.prepare.download.retry import RetryPolicy, send
from firedpy_nrt.prepare.download.transfer import origin

log = logging.getLogger(__name__)

TOKEN_PATH = "/api/users/find_or_create_token"


#: Query keys that make a URL pre-signed (S3 SigV4 and SigV2, CloudFront): such a URL carries
#: its own credential and refuses a second one, whatever host serves it.
_SIGNED_KEYS = {"x-amz-signature", "x-amz-credential", "signature", "awsaccesskeyid"}


def presigned(url: str) -> bool:
    return bool(_SIGNED_KEYS & {k.lower() for k in parse_qs(urlparse(url).query)})


def how_to_log_in(edl_url: str) -> str:
    host = urlparse(edl_url).hostname
    return (
        "set EARTHDATA_TOKEN (a token from Earthdata Login's 'Generate Token' page), or "
        "EARTHDATA_USERNAME and EARTHDATA_PASSWORD, or add "
        f"'machine {host} login <user> password <password>' to ~/.netrc"
    )


def earthdata_token(edl_url: str, policy: RetryPolicy, timeout: tuple[float, float]) -> str:
    """The Earthdata bearer token (registered as a secret, so logs mask it)."""
    token = os.environ.get("EARTHDATA_TOKEN", "").strip()
    if token:
        SECRETS.add(token)
        return token
    host = urlparse(edl_url).hostname or ""
    try:
        credentials = load_credentials("EARTHDATA", [host], how_to_log_in(edl_url))
    except CredentialsError as exc:
        if str(exc).startswith("no credentials found"):
            raise CredentialsError(
                f"Earthdata Login: no credentials ({how_to_log_in(edl_url)})"
            ) from None
        raise
    url = edl_url.rstrip("/") + TOKEN_PATH
    with requests.Session() as session:
        response = send(
            session,
            "POST",
            url,
            policy,
            "Earthdata Login",
            auth=(credentials.username, credentials.password),
            allow_redirects=False,
            timeout=timeout,
        )
    with response:
        if response.status_code in (401, 403):
            raise CredentialsError(
                f"Earthdata Login at {origin(edl_url)} refused the username and password "
                f"from {credentials.source} (HTTP {response.status_code})"
            )
        if response.status_code != 200:
            raise DownloadError(
                f"Earthdata Login at {origin(edl_url)}: HTTP {response.status_code} from "
                f"{TOKEN_PATH}"
            )
        try:
            token = str(response.json()["access_token"])
        except (ValueError, KeyError, TypeError):
            raise DownloadError(
                f"Earthdata Login at {origin(edl_url)}: the answer of {TOKEN_PATH} holds no "
                "access_token"
            ) from None
    if not token.strip():
        raise DownloadError(f"Earthdata Login at {origin(edl_url)}: an empty access_token")
    SECRETS.add(token)
    log.info("Earthdata Login: token from %s", credentials.source)
    return token


class EarthdataAuth:
    """The bearer token for trusted origins only (an ``Authenticator`` of the transfer code)."""

    def __init__(self, token: str, trusted: set[str]) -> None:
        self._token = token
        self._trusted = {origin(u) for u in trusted}

    def trust(self, url: str) -> None:
        self._trusted.add(origin(url))

    def trusts(self, url: str) -> bool:
        return origin(url) in self._trusted and not presigned(url)

    def headers(self, url: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self.trusts(url) else {}

    def unauthorized(self, sent: dict[str, str]) -> None:
        raise CredentialsError(
            "Earthdata Login: the token was refused (expired or not authorised for this "
            "data; EARTHDATA_TOKEN tokens last 60 days)"
        )
