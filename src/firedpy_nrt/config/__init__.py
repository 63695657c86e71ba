"""Structured configs: one dataclass module per area, checked once at start-up.

``validate(cfg, Schema)`` merges the composed Hydra config onto the dataclass schema, so an
unknown key or a value of the wrong type fails with the key's full name; then it builds the
dataclasses, checks every ``_target_`` node's keys against the target's signature, and calls
each dataclass's ``check()`` for range rules. Every failure is one :class:`ConfigError` line.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from firedpy_nrt.errors import ConfigError


class Invalid(ValueError):
    """Raised by a schema's ``check()``: ``key`` is relative to that schema."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message

    def as_config_error(self, prefix: str = "") -> ConfigError:
        """The one-line error a user sees, the key in full (``prefix`` is the schema's path)."""
        return ConfigError(f"config key '{_join(prefix, self.key)}': {self.message}")


def require(condition: bool, key: str, message: str) -> None:
    """Raise :class:`Invalid` for ``key`` unless ``condition`` holds."""
    if not condition:
        raise Invalid(key, message)


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def require_plain_name(value: str, key: str) -> None:
    """A name that becomes one folder (``task_name``): letters, digits, ``.``, ``_``, ``-``."""
    require(
        bool(_PLAIN_NAME.match(value)) and ".." not in value,
        key,
        f"must be a plain folder name (letters, digits, '.', '_', '-'), got {value!r}",
    )


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _check_target(node: dict, prefix: str) -> None:
    """The ``_target_`` of ``node`` imports and takes every key of ``node`` (``prefix`` is the
    node's full key); else a :class:`ConfigError` naming the key."""
    target = node["_target_"]
    module_name, _, attr = str(target).rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(
            f"config key '{_join(prefix, '_target_')}': cannot import {target!r}"
        ) from exc
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for key in node:
        if str(key).startswith("_") and str(key).endswith("_"):
            continue
        if key not in params:
            raise ConfigError(
                f"config key '{_join(prefix, key)}': not a parameter of {target} "
                f"(expected one of: {', '.join(p for p in params if p != 'self')})"
            )


def _nodes(obj: Any, prefix: str) -> Iterator[tuple[Any, str]]:
    """Every dataclass and mapping of the built tree, parents first, with its full key."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        yield obj, prefix
        for f in dataclasses.fields(obj):
            yield from _nodes(getattr(obj, f.name), _join(prefix, f.name))
    elif isinstance(obj, dict):
        yield obj, prefix
        for key, value in obj.items():
            yield from _nodes(value, _join(prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _nodes(value, f"{prefix}[{i}]")


def _walk(built: Any) -> None:
    """Every ``_target_`` node's keys against its target's signature first, then every schema's
    ``check()``: a check that builds a target (a loss, a scheduler, a callback) never meets a
    misspelt key, which is named here as ``loss.typo``, not reported as the target's TypeError."""
    nodes = list(_nodes(built, ""))
    for node, prefix in nodes:
        if isinstance(node, dict) and "_target_" in node:
            _check_target(node, prefix)
    for node, prefix in nodes:
        check = getattr(node, "check", None) if dataclasses.is_dataclass(node) else None
        if callable(check):
            try:
                check()
            except Invalid as exc:
                raise exc.as_config_error(prefix) from None


def _unknown_key(node: Any, schema: type, prefix: str) -> str | None:
    """The first key of ``node`` (a plain mapping) that the dataclass ``schema`` does not have,
    looking into nested dataclass fields; keys added with ``+`` pass Hydra's own struct check."""
    if not isinstance(node, dict):
        return None
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key, value in node.items():
        if key not in fields:
            return _join(prefix, key)
        sub = fields[key].type
        sub = _dataclass_type(sub, schema)
        if sub is not None:
            found = _unknown_key(value, sub, _join(prefix, key))
            if found:
                return found
    return None


def _dataclass_type(annotation: Any, owner: type) -> type | None:
    """The dataclass an annotation names (string annotations resolved in the owner's module)."""
    if isinstance(annotation, str):
        module = importlib.import_module(owner.__module__)
        annotation = getattr(module, annotation.split("|")[0].strip(), None)
    return annotation if dataclasses.is_dataclass(annotation) else None


def validate(cfg: DictConfig, schema: type) -> Any:
    """Check ``cfg`` against the dataclass ``schema``; return the built dataclass tree."""
    plain = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    unknown = _unknown_key(plain, schema, "")
    if unknown:
        raise ConfigError(f"config key '{unknown}' does not exist")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        built = OmegaConf.to_object(merged)
    except MissingMandatoryValue as exc:
        raise ConfigError(f"config key '{exc.full_key}': a value is required") from None
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        msg = str(getattr(exc, "msg", None) or exc).splitlines()[0]
        raise ConfigError(f"config key '{key}': {msg}") from None
    _walk(built)
    return built
