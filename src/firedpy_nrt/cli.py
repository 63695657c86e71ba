"""What the thin entry points share: config validation and one-line error reporting."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from omegaconf import DictConfig

from firedpy_nrt.config import validate
from firedpy_nrt.errors import FiredpyError

log = logging.getLogger("firedpy_nrt")
T = TypeVar("T")


def run_entry(fn: Callable[[DictConfig], T], cfg: DictConfig, schema: type) -> T:
    """Validate ``cfg`` against ``schema``, call ``fn``; a FiredpyError becomes one line and an exit code."""
    try:
        validate(cfg, schema)
        return fn(cfg)
    except FiredpyError as exc:
        # One line on stderr; Hydra's console log would repeat it, so it goes to the log file only.
        log.debug("%s: %s", type(exc).__name__, exc)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)


def exit_with(code: int) -> Any:
    """Exit with ``code`` when it is non-zero (a stage that failed some items), else return."""
    if code:
        sys.exit(code)
    return None
