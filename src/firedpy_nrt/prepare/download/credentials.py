"""Account credentials from the environment or ``~/.netrc``, and scrubbing secrets from text.

Credentials never come from config, so they cannot end up in Hydra's saved ``config.yaml``.
Every secret we hold (password, access and refresh tokens) is registered with :data:`SECRETS`;
its logging filter and :func:`scrub` replace them with ``***`` in log records and messages.
"""

from __future__ import annotations

import contextlib
import logging
import netrc
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from firedpy_nrt.errors import CredentialsError

CDSE_MACHINE = "identity.dataspace.copernicus.eu"


@dataclass(frozen=True)
class Credentials:
    """A username and password; the password never shows in ``repr``."""

    username: str
    password: str = field(repr=False)
    source: str = ""


class SecretRegistry(logging.Filter):
    """The secrets of this process; as a logging filter it masks them in every record."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str | None) -> None:
        # Very short values would mask ordinary words; real passwords and tokens are longer.
        if secret and len(secret) >= 4:
            with self._lock:
                self._secrets.add(secret)

    def scrub(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            clean = self.scrub(message)
            if clean != message:
                record.msg, record.args = clean, None
            if record.exc_info and record.exc_info[1] is not None:
                text = logging.Formatter().formatException(record.exc_info)
                record.exc_text = self.scrub(text)
                record.exc_info = None
        return True


SECRETS = SecretRegistry()


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    return SECRETS.scrub(text)


@contextlib.contextmanager
def scrubbed_logs() -> Iterator[None]:
    """Mask every secret in records reaching the root logger's handlers (console, log file)."""
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(SECRETS)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(SECRETS)


def _netrc_path() -> Path:
    return Path(os.environ["NETRC"]) if os.environ.get("NETRC") else Path.home() / ".netrc"


def load_credentials(env_prefix: str, machines: list[str], how: str) -> Credentials:
    """``<PREFIX>_USERNAME``/``<PREFIX>_PASSWORD`` from the environment, else the first netrc
    machine in ``machines``; else a CredentialsError whose message is ``how`` to set them."""
    user = os.environ.get(f"{env_prefix}_USERNAME", "")
    password = os.environ.get(f"{env_prefix}_PASSWORD", "")
    if user and password:
        SECRETS.add(password)
        return Credentials(user, password, source="environment")
    if user or password:
        missing = f"{env_prefix}_PASSWORD" if user else f"{env_prefix}_USERNAME"
        raise CredentialsError(f"{missing} is not set ({how})")
    path = _netrc_path()
    if path.is_file():
        try:
            table = netrc.netrc(str(path))
        except netrc.NetrcParseError as exc:
            # The parser's message can quote a token of the file, so only its line is reported.
            raise CredentialsError(f"{path}: cannot parse line {exc.lineno} ({how})") from None
        except OSError as exc:
            raise CredentialsError(f"{path}: cannot read ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise CredentialsError(f"{path}: not a UTF-8 text file ({how})") from None
        for machine in machines:
            entry = table.authenticators(machine)
            if entry and entry[0] and entry[2]:
                SECRETS.add(entry[2])
                return Credentials(entry[0], entry[2], source=f"{path} (machine {machine})")
    raise CredentialsError(f"no credentials found: {how}")


def cdse_credentials(token_host: str | None = None) -> Credentials:
    """Copernicus Data Space credentials (``CDSE_USERNAME``/``CDSE_PASSWORD`` or ``~/.netrc``)."""
    machines = [CDSE_MACHINE]
    if token_host and token_host != CDSE_MACHINE:
        machines.insert(0, token_host)
    how = (
        "set CDSE_USERNAME and CDSE_PASSWORD, or add "
        f"'machine {CDSE_MACHINE} login <user> password <password>' to ~/.netrc "
        "(or the file named by NETRC)"
    )
    return load_credentials("CDSE", machines, how)


def dhus_credentials(api_host: str) -> Credentials:
    """Credentials of a DHuS hub (``DHUS_USERNAME``/``DHUS_PASSWORD`` or ``~/.netrc``)."""
    how = (
        "set DHUS_USERNAME and DHUS_PASSWORD, or add "
        f"'machine {api_host} login <user> password <password>' to ~/.netrc"
    )
    return load_credentials("DHUS", [api_host], how)
