"""Start-up stays light: the config schemas every entry point composes load without torch."""

from __future__ import annotations

import subprocess
import sys


def test_the_config_schemas_load_without_torch_or_lightning() -> None:
    """``prepare.py`` needs no torch, and a mistyped key must fail in a blink: the schemas (and
    the names they validate against, such as predict's ``tta``) import neither torch nor
    Lightning. Importing them from the model code once made every start-up 6 s instead of 0.5."""
    code = (
        "import sys, firedpy_nrt.config.store, firedpy_nrt.config.predict, "
        "firedpy_nrt.config.train, firedpy_nrt.config.prepare; "
        "heavy = sorted(m for m in ('torch', 'lightning', 'torchvision') if m in sys.modules); "
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"the config imports {done.stdout.strip()}"


def test_predict_tta_names_match_the_views() -> None:
    from firedpy_nrt.config.predict import TTAS
    from firedpy_nrt.predict.predictor import TTA_VIEWS

    assert tuple(TTA_VIEWS) == TTAS
