"""Fixtures for the model tests: a random-batch datamodule in the FireDataModule batch format."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from random_data import RandomDataModule  # noqa: E402


@pytest.fixture
def tiny_data() -> RandomDataModule:
    return RandomDataModule(n=4, size=32, batch_size=2)
