"""What counts as a secret in a config, and the copies of configs with secrets taken out.

Credentials come from the environment or ``~/.netrc`` only. A config key that names a secret
(``password``, ``token``, ``api_key``, ...) or a URL that carries ``user:password@`` is refused on
the command line before Hydra writes anything (:func:`firedpy_nrt.cli.check_overrides`), and
whatever configs a run saves (Hydra's ``.hydra/*.yaml``, the run's ``config.yaml``) go through
:func:`redact`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from firedpy_nrt.atomic import write_text

#: A key whose value would be a secret: the whole leaf name or its last word.
_SECRET_KEY = re.compile(
    r"(^|[_-])(password|passwd|passphrase|passcode|pwd|secret|token|api[_-]?key|apikey|"
    r"credentials?|private[_-]key|access[_-]key|secret[_-]key|subscription[_-]key|sas|bearer|"
    r"auth|authorization|cookie|session[_-]id)$",
    re.IGNORECASE,
)
#: ``scheme://user:password@host`` (or ``user@``) anywhere in a value.
_URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s@]+@", re.IGNORECASE)
REDACTED = "***"


def is_secret_key(key: str) -> bool:
    """Whether a config key (dotted or not) names a secret: its leaf is ``password``,
    ``cdse_token``, ``api_key`` ... (but not ``token_url`` or ``token_margin_s``)."""
    leaf = str(key).rsplit(".", 1)[-1].lstrip("+~")
    return bool(_SECRET_KEY.search(leaf))


def has_url_credentials(value: Any) -> bool:
    """Whether a value holds a URL with credentials in it (``https://user:pw@host``)."""
    return isinstance(value, str) and bool(_URL_CREDENTIALS.search(value))


def _clean_url(value: str) -> str:
    return _URL_CREDENTIALS.sub(
        lambda m: m.group(0).split("://", 1)[0] + "://" + REDACTED + "@", value
    )


def redact(node: Any) -> Any:
    """A copy of a plain config (dicts, lists, values) without secrets: values under secret
    keys become ``***`` and credentials in URLs ``***@``."""
    if isinstance(node, dict):
        return {
            k: (REDACTED if is_secret_key(str(k)) and v is not None else redact(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [redact(v) for v in node]
    if isinstance(node, str):
        if has_url_credentials(node):
            return _clean_url(node)
        # an override line as Hydra saves it: "key=value"
        key, sep, _ = node.partition("=")
        if sep and is_secret_key(key):
            return f"{key}={REDACTED}"
    return node


def redact_saved_configs(folder: Path) -> None:
    """Rewrite every YAML file in ``folder`` (Hydra's ``.hydra/``) with secrets redacted."""
    for path in sorted(Path(folder).glob("*.yaml")):
        try:
            plain = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        except Exception:  # not ours to parse: leave it, but never keep it if it holds a secret
            continue
        cleaned = redact(plain)
        if cleaned != plain:
            write_text(path, OmegaConf.to_yaml(OmegaConf.create(cleaned)))
