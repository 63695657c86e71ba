"""Fixtures of the prediction tests (defined in predict_support, which the tests import by that
unique name: several test folders have a conftest.py, so ``from conftest import`` is ambiguous)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from predict_support import one_torch_thread, predict_cfg, scene_factory  # noqa: E402, F401
