"""Exception types, one per area; the entry points print them as one line and exit non-zero."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a
    one-line error quotes of a library's multi-line message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class FiredpyError(Exception):
    """Base of every error the entry points report as a one-line message."""

    exit_code = 2


class ConfigError(FiredpyError):
    """A config key is unknown or has a bad value; the message names the key."""


class DataError(FiredpyError):
    """A raster, CSV or events file is missing, corrupt or inconsistent; the message names it."""


class DownloadError(FiredpyError):
    """A search or download failed (server unreachable, bad credentials, bad product)."""


class CredentialsError(DownloadError):
    """Credentials are missing or rejected; the message says how to set them, never their value."""
