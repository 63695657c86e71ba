"""Run the preparation stages named in ``stages=[...]`` in order."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from firedpy_nrt.config.prepare import PrepareConfig


log = logging.getLogger(__name__)

#: Stage name -> ``module:function``; each function takes the prepare config, returns StageResult.
STAGES: dict[str, str] = {
    "synthetic": "firedpy_nrt.prepare.synthetic:run_stage",
    "download": "firedpy_nrt.prepare.download:run_stage",
    "dnbr": "firedpy_nrt.prepare.dnbr:run_stage",
    "sar": "firedpy_nrt.prepare.sar:run_stage",
    "match": "firedpy_nrt.prepare.match:run_stage",
}


@dataclass
class StageResult:
    """What one stage did: items written, skipped (already there), and failed with reasons."""

    stage: str
    written: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.stage}: {self.written} written, {self.skipped} skipped, "
            f"{len(self.failed)} failed"
        )


def run(cfg: PrepareConfig) -> int:
    """Run every stage; return 0 when nothing failed, 1 otherwise (so wrappers can retry)."""
    results: list[StageResult] = []
    for name in cfg.stages:
        module_name, _, func = STAGES[name].partition(":")
        stage = getattr(importlib.import_module(module_name), func)
        log.info("stage %s: starting", name)
        result = stage(cfg)
        results.append(result)
        log.info(result.summary())
        for reason in result.failed:
            log.error("%s failed: %s", name, reason)
    return 1 if any(r.failed for r in results) else 0
