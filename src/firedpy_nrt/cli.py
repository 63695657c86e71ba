"""What the thin entry points share: the config schemas, validating the config once, and
one-line error reporting."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig

from firedpy_nrt.config import validate
from firedpy_nrt.config.store import register_schemas
from firedpy_nrt.errors import FiredpyError

log = logging.getLogger("firedpy_nrt")
T = TypeVar("T")


def run_entry(fn: Callable[[Any], T], cfg: DictConfig, schema: type) -> T:
    """Validate ``cfg`` into the dataclass ``schema`` (the one validation of a run) and call ``fn``
    with it; a FiredpyError becomes one line and an exit code. What Hydra saved of the config
    (``.hydra/*.yaml``) is redacted first, whether the run then goes on or is refused."""
    _redact_hydra_output()
    try:
        return fn(validate(cfg, schema))
    except FiredpyError as exc:
        # One line on stderr; Hydra's console log would repeat it, so it goes to the log file only.
        log.debug("%s: %s", type(exc).__name__, exc)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        # A folder that cannot be written, a disk that is full: the file and the reason, in one
        # line (the traceback goes to the run's log file for a bug report).
        log.debug("unexpected OSError", exc_info=True)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def _redact_hydra_output() -> None:
    from hydra.core.hydra_config import HydraConfig

    from firedpy_nrt.redaction import redact_saved_configs

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.output_subdir is not None:
        redact_saved_configs(Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir)


def _refuse_secrets(parsed: list[Any]) -> None:
    """Secrets never come from the command line: Hydra would save them with the run."""
    from firedpy_nrt.redaction import has_url_credentials, is_secret_key

    for override in parsed:
        key = override.key_or_group
        if is_secret_key(key):
            _fail(
                f"config key '{key}': secrets are not taken from the command line or config "
                "files (they would be saved with the run); set them in the environment or "
                "~/.netrc (README: Credentials)"
            )
        if has_url_credentials(override.input_line.partition("=")[2]):
            _fail(
                f"config key '{key}': a URL with credentials in it (user:password@host); give the "
                "URL without them and the credentials in the environment or ~/.netrc"
            )


def exit_with(code: int) -> Any:
    """Exit with ``code`` when it is non-zero (a stage that failed some items), else return."""
    if code:
        sys.exit(code)
    return None


def _one_line(exc: BaseException) -> str:
    """Hydra's multi-line composition errors folded into one line (dropping its hints)."""
    noise = ("full_key:", "object_type=", "To append to your config", "Set the environment")
    parts: list[str] = []
    while exc is not None:
        lines = str(exc).split("Config search path:")[0].splitlines()
        for line in (raw.strip() for raw in lines):
            if not line or line.startswith(noise) or line in parts:
                continue
            if parts and parts[-1].endswith(":"):
                parts[-1] += " " + line
            elif parts and parts[-1].startswith("Available options") and "'" not in line:
                parts[-1] += ", " + line
            else:
                parts.append(line)
        exc = exc.__cause__
    return "; ".join(parts)


def _suggest(base: DictConfig, dotted: str) -> str:
    """A 'did you mean' for a mistyped key, from the keys beside it in the composed config."""
    import difflib

    from omegaconf import OmegaConf

    parent, _, leaf = dotted.rpartition(".")
    node = OmegaConf.select(base, parent) if parent else base
    if not isinstance(node, DictConfig):
        return ""
    close = difflib.get_close_matches(leaf, [str(k) for k in node], n=1)
    return f" (did you mean '{parent + '.' if parent else ''}{close[0]}'?)" if close else ""


def check_overrides(config_dir: str, config_name: str, argv: list[str] | None = None) -> None:
    """Compose once with the command line's plain overrides so that a mistyped key or a bad
    group choice stops with one line naming it, before Hydra starts a run (or a sweep).

    Sweep values (``a=1,2``), ``hydra.*`` keys and flags are left to Hydra itself.
    """
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_schemas()
    args = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    if any(a in ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c") for a in sys.argv):
        return
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except HydraException as exc:
        _fail(f"bad command-line override: {_one_line(exc)}")
    _refuse_secrets(parsed)
    plain = [
        o.input_line
        for o in parsed
        if not o.is_sweep_override()
        and not o.key_or_group.startswith(("hydra.", "hydra/"))
        and o.key_or_group != "hydra"
    ]
    config_dir = str(Path(config_dir).resolve())
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            try:
                composed = compose(config_name=config_name, overrides=plain)
            except (HydraException, OmegaConfBaseException) as exc:
                msg = _one_line(exc)
                key = next(
                    (
                        o.key_or_group
                        for o in parsed
                        if f"'{o.key_or_group}'" in msg or f"override {o.input_line}" in msg
                    ),
                    None,
                )
                if key and ("not in struct" in msg or "' not in '" in msg):
                    base = compose(config_name=config_name, overrides=[])
                    msg = f"config key '{key}' does not exist{_suggest(base, key)}"
                elif key:
                    msg = f"config key '{key}': {_reason(msg)}"
                _fail(msg)
            _check_log_dir(composed)
    finally:
        GlobalHydra.instance().clear()


def _check_log_dir(cfg: DictConfig) -> None:
    """Hydra creates the run's folder ``<paths.log_dir>/<task_name>/...`` before anything of ours
    runs: a task_name that is not a plain folder name, or a log_dir that cannot be written, is one
    line here instead of a folder elsewhere or Hydra's traceback."""
    from omegaconf import OmegaConf

    from firedpy_nrt.atomic import writable_dir
    from firedpy_nrt.config import Invalid, require_plain_name
    from firedpy_nrt.errors import DataError

    for key in ("task_name", "train_task"):  # folder names under log_dir
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            try:
                require_plain_name(str(value), key)
            except Invalid as exc:
                _fail(str(exc.as_config_error()))
    log_dir = OmegaConf.select(cfg, "paths.log_dir", default=None)
    if log_dir:
        try:
            writable_dir(log_dir, "paths.log_dir")
        except DataError as exc:
            _fail(str(exc))


def _reason(msg: str) -> str:
    """The part of a folded Hydra/OmegaConf message that says what is wrong with the value."""
    parts = [
        p
        for p in msg.split("; ")
        if not p.startswith(("Error merging override", "reference_type=", "Could not override"))
    ]
    return "; ".join(parts) or msg


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)
