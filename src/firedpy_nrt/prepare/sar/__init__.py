"""The ``sar`` stage: a FIREDpy event's luminance change and coherence change, from services.

Per event, written under the match stage's folders with the data contract's names::

    <match.lum_dir>/{fire}_{d1}_{d2}_DeltaLumin_30m.tif         OPERA RTC-S1 (ASF data pool)
    <match.coh_dir>/{fire}_{d0}_{d1}_{d2}_cohChange.tif         ASF HyP3 INSAR_GAMMA
    <match.binary_dir>/{fire}_FIREDpy_sar_combined_{d1}_{d2}.tif  (sar.label=perimeter|threshold)

1. Search CMR for the OPERA RTC-S1 bursts over the event; choose the track and d0, d1, d2
   (:mod:`.selection`).
2. Luminance change: read the event's window of each burst COG (range requests), mosaic per
   date, ``10 * log10(post / pre)``.
3. Coherence change: find the HyP3 jobs of the pairs (d0, d1) and (d1, d2) by name, submit the
   missing ones (every event's, before waiting on any), wait up to ``sar.hyp3_timeout_s``,
   download the product zips (resumable) and difference their coherence.

A finished output is never redone (``overwrite=true`` redoes it): a complete re-run searches
but submits nothing and downloads nothing. Jobs still running at the timeout are named in the
stage's failures; a re-run finds and waits for them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from hyp3_sdk.jobs import Job
from rasterio.errors import RasterioError

from firedpy_nrt.config.prepare import PrepareConfig
from firedpy_nrt.data.layers import (
    binary_product_name,
    coh_change_name,
    lum_change_name,
    resolution_label,
)
from firedpy_nrt.errors import (
    CredentialsError,
    DataError,
    FiredpyError,
    first_line,
)
from firedpy_nrt.geotiff import write_geotiff
from firedpy_nrt.prepare.download.credentials import scrub, scrubbed_logs
from firedpy_nrt.prepare.download.transfer import TransferSettings, plain_session
from firedpy_nrt.prepare.events import FireEvent, events_of
from firedpy_nrt.prepare.pipeline import StageResult
from firedpy_nrt.prepare.sar.cmr import search_rtc
from firedpy_nrt.prepare.sar.coherence import coherence_change
from firedpy_nrt.prepare.sar.earthdata import EarthdataAuth, earthdata_token
from firedpy_nrt.prepare.sar.hyp3 import Hyp3Jobs, PairRequest, job_name
from firedpy_nrt.prepare.sar.label import NODATA, perimeter_label, threshold_label
from firedpy_nrt.prepare.sar.lattice import output_grid
from firedpy_nrt.prepare.sar.luminance import log_ratio, mosaic
from firedpy_nrt.prepare.sar.remote_raster import RangeReader, open_remote, raise_read_error
from firedpy_nrt.prepare.sar.selection import SarPlan, plan
from firedpy_nrt.raster_grid import RasterGrid

log = logging.getLogger(__name__)

__all__ = ["run_stage", "make_sar_layers"]


@dataclass
class _EventWork:
    """One event's plan, output paths and (once known) HyP3 jobs."""

    event: FireEvent
    plan: SarPlan
    lum: Path
    coh: Path
    label: Path | None
    pairs: list[PairRequest] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)


class _SarStage:
    def __init__(self, cfg: PrepareConfig) -> None:
        self.cfg = cfg
        self.sar = cfg.sar
        self.settings = TransferSettings.of(cfg.download)
        self.timeout = (cfg.download.connect_timeout_s, cfg.download.read_timeout_s)
        self.session = plain_session()
        self.lum_dir = Path(cfg.match.lum_dir)
        self.coh_dir = Path(cfg.match.coh_dir)
        self.label_dir = Path(cfg.match.binary_dir)
        self.product_dir = Path(cfg.paths.data_dir) / "sar" / "hyp3"
        self.result = StageResult("sar")
        self._token: str | None = None

    # -- helpers -------------------------------------------------------------------------------
    def token(self) -> str:
        if self._token is None:
            self._token = earthdata_token(self.sar.edl_url, self.settings.policy, self.timeout)
        return self._token

    def _done(self, path: Path) -> bool:
        return path.is_file() and not self.cfg.overwrite

    def _write(self, path: Path, array: np.ndarray, grid: RasterGrid, nodata: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_geotiff(path, array, grid, nodata, cog=True)
        self.result.written += 1
        log.info("wrote %s", path)

    def _paths(self, event: FireEvent, p: SarPlan) -> tuple[Path, Path, Path | None]:
        """The data contract's names (``data/layers.py``), so ``match`` reads them unchanged."""
        res = resolution_label(p.bursts[p.d1][0].res_m)
        lum = self.lum_dir / lum_change_name(event.id, p.d1, p.d2, res)
        coh = self.coh_dir / coh_change_name(event.id, p.d0, p.d1, p.d2)
        label = None
        if self.sar.label != "none":
            label = self.label_dir / binary_product_name(event.id, p.d1, p.d2)
        return lum, coh, label

    # -- 1: search, plan, luminance -----------------------------------------------------------
    def prepare_event(self, event: FireEvent) -> _EventWork | None:
        start = event.ig_date - dt.timedelta(days=self.sar.days_before)
        end = event.last_date + dt.timedelta(days=self.sar.days_after)
        granules = search_rtc(
            self.sar,
            event.geometry,
            start,
            end,
            self.session,
            self.settings.policy,
            self.timeout,
        )
        log.info(
            "event %s: %d OPERA RTC-S1 granules from %s to %s", event.id, len(granules), start, end
        )
        p = plan(
            event.id,
            event.ig_date,
            event.last_date,
            event.geometry,
            granules,
            self.sar.polarization,
        )
        log.info(
            "event %s: %s, d0 %s, d1 %s, d2 %s (%d bursts per date)",
            event.id,
            p.track_name,
            p.d0,
            p.d1,
            p.d2,
            len(p.bursts[p.d1]),
        )
        lum, coh, label = self._paths(event, p)
        work = _EventWork(event, p, lum, coh, label)
        if self._done(lum):
            self.result.skipped += 1
        else:
            array, grid = self.luminance(p, event)
            self._write(lum, array, grid, float("nan"))
        if label is not None and self.sar.label == "perimeter":
            self.write_label(work, None)
        if self._done(coh):
            self.result.skipped += 1
            if label is not None and self.sar.label == "threshold":
                self.write_label(work, None)
            return None
        work.pairs = [
            PairRequest(job_name(event.id, p.d0, p.d1), p.slc(p.d0), p.slc(p.d1)),
            PairRequest(job_name(event.id, p.d1, p.d2), p.slc(p.d1), p.slc(p.d2)),
        ]
        return work

    def luminance(self, p: SarPlan, event: FireEvent) -> tuple[np.ndarray, RasterGrid]:
        pol = self.sar.polarization
        bursts = {d: p.bursts[d] for d in (p.d1, p.d2)}
        auth = EarthdataAuth(self.token(), {g.urls[pol] for gs in bursts.values() for g in gs})
        readers: list[RangeReader] = []
        with contextlib.ExitStack() as stack:
            sources: dict[dt.date, list] = {}
            for day, granules in bursts.items():
                sources[day] = []
                for g in granules:
                    reader = RangeReader(
                        self.session, g.urls[pol], auth, self.settings, f"{g.ur}_{pol}.tif"
                    )
                    readers.append(reader)
                    sources[day].append(stack.enter_context(open_remote(reader)))
            grid = output_grid(sources[p.d1] + sources[p.d2], event.geometry, self.sar.buffer_m)
            try:
                pre = mosaic(sources[p.d1], grid)
                post = mosaic(sources[p.d2], grid)
            except RasterioError as exc:
                raise_read_error(readers, exc)
        return log_ratio(pre, post), grid

    # -- labels --------------------------------------------------------------------------------
    def write_label(self, work: _EventWork, coh: tuple[np.ndarray, RasterGrid] | None) -> None:
        path = work.label
        if path is None:
            return
        if self._done(path):
            self.result.skipped += 1
            return
        lum, lum_grid = _read(work.lum)
        if self.sar.label == "perimeter":
            label = perimeter_label(lum, lum_grid, work.event.geometry)
        else:
            coh_array, coh_grid = coh if coh is not None else _read(work.coh)
            label = threshold_label(
                lum, lum_grid, coh_array, coh_grid, self.sar.label_k, self.sar.coh_formula
            )
        self._write(path, label, lum_grid, NODATA)

    # -- 2: HyP3 --------------------------------------------------------------------------------
    def run_jobs(self, hyp3: Hyp3Jobs, works: list[_EventWork]) -> list[_EventWork]:
        """Find or submit every pair's job, wait; return the works whose jobs all succeeded."""
        found: dict[str, Job] = {}
        missing: list[PairRequest] = []
        for work in works:
            for pair in work.pairs:
                if pair.name in found or pair in missing:
                    continue
                job = hyp3.find(pair)
                if job is None:
                    missing.append(pair)
                else:
                    log.info(
                        "HyP3: reusing job %s (%s, %s)",
                        job.job_id,
                        pair.name,
                        job.status_code.lower(),
                    )
                    found[pair.name] = job
        for job in hyp3.submit(missing):
            found[str(job.name)] = job
        jobs, waiting = hyp3.wait(list({j.job_id: j for j in found.values()}.values()))
        by_name = {str(j.name): j for j in jobs}
        ready: list[_EventWork] = []
        for work in works:
            work.jobs = [by_name[p.name] for p in work.pairs]
            late = [j for j in work.jobs if not j.complete()]
            failed = [j for j in work.jobs if j.failed()]
            if late:
                self.result.failed.append(
                    f"event {work.event.id}: HyP3 jobs still waiting after "
                    f"sar.hyp3_timeout_s={self.sar.hyp3_timeout_s:g}: "
                    + ", ".join(f"{j.name} ({j.job_id}, {j.status_code})" for j in late)
                    + "; run again to pick them up"
                )
            elif failed:
                self.result.failed.append(
                    f"event {work.event.id}: HyP3 jobs failed: "
                    + ", ".join(f"{j.name} ({j.job_id})" for j in failed)
                    + "; a re-run submits them again"
                )
            else:
                ready.append(work)
        if waiting:
            log.warning("HyP3: %d job(s) not finished in time", len(waiting))
        return ready

    # -- 3: coherence --------------------------------------------------------------------------
    def finish_event(self, hyp3: Hyp3Jobs, work: _EventWork) -> None:
        self.product_dir.mkdir(parents=True, exist_ok=True)
        zips = [hyp3.fetch(job, self.product_dir) for job in work.jobs]
        change, grid = coherence_change(
            zips[0], zips[1], work.event.geometry, self.sar.buffer_m, self.sar.coh_formula
        )
        self._write(work.coh, change, grid, float("nan"))
        if self.sar.label == "threshold":
            self.write_label(work, (change, grid))
        if not self.sar.keep_products:
            for path in zips:
                path.unlink(missing_ok=True)

    def run(self, events: list[FireEvent]) -> StageResult:
        works: list[_EventWork] = []
        for event in events:
            try:
                work = self.prepare_event(event)
            except CredentialsError:
                raise  # no event can go on: one line for the whole stage
            except FiredpyError as exc:
                self.result.failed.append(scrub(f"event {event.id}: {exc}"))
                continue
            if work is not None:
                works.append(work)
        if works:
            hyp3 = Hyp3Jobs(self.sar, self.token(), self.settings.policy, self.settings)
            for work in self.run_jobs(hyp3, works):
                try:
                    self.finish_event(hyp3, work)
                except FiredpyError as exc:
                    self.result.failed.append(scrub(f"event {work.event.id}: {exc}"))
        return self.result


def _read(path: Path) -> tuple[np.ndarray, RasterGrid]:
    try:
        with rasterio.open(path) as src:
            return src.read(1).astype(np.float32), RasterGrid.of(src)
    except RasterioError as exc:
        raise DataError(f"{path}: cannot read ({first_line(exc)})") from None


def make_sar_layers(events: list[FireEvent], cfg: PrepareConfig) -> StageResult:
    return _SarStage(cfg).run(events)


def run_stage(cfg: PrepareConfig) -> StageResult:
    """Make the SAR layers of ``cfg.events`` (``event_ids``)."""
    events = events_of(cfg, "sar")
    with scrubbed_logs():
        try:
            return make_sar_layers(events, cfg)
        except FiredpyError as exc:
            raise type(exc)(scrub(str(exc))) from None
