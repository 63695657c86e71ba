"""Building the Lightning ``Trainer`` of training and prediction: what Lightning refuses at
construction (a GPU that is not there, a strategy that does not fit) becomes one config line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from firedpy_nrt.errors import ConfigError

#: Words in Lightning's message -> the key the user should look at.
_KEYS = (
    (("gpu", "cuda", "mps", "tpu", "accelerator", "backend"), "trainer.accelerator"),
    (("strategy", "ddp"), "trainer.strategy"),
    (("precision",), "trainer.precision"),
    (("devices", "device"), "trainer.devices"),
)


def build_trainer(make: Callable[[], Any]) -> Any:
    """``make()`` (a Trainer), or a ConfigError naming the trainer key Lightning refused."""
    try:
        return make()
    except ConfigError:
        raise
    except Exception as exc:  # Lightning raises MisconfigurationException, ValueError, TypeError...
        cause = exc.__cause__ or exc  # hydra's instantiate wraps what the Trainer raised
        text = " ".join(str(cause).split()) or type(cause).__name__
        lower = text.lower()
        key = next((k for words, k in _KEYS if any(w in lower for w in words)), "trainer")
        hint = " (this machine has none: use trainer=cpu)" if key == "trainer.accelerator" else ""
        raise ConfigError(f"config key '{key}': {text[:300]}{hint}") from None
