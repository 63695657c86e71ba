"""The ``download`` stage: search each fire's scenes and fetch them, extracted, with a manifest.

Layout (read by the dNBR stage)::

    <paths.data_dir>/scenes/<fire id>/manifest.json
    <paths.data_dir>/scenes/<fire id>/sentinel/<name>.SAFE/
    <paths.data_dir>/scenes/<fire id>/landsat/<product id>/
    <paths.data_dir>/scenes/<fire id>/archives/<satellite>/<name>.zip|.tar  (keep_archives=true)

Searches run one after another (a failure there stops the stage with one line); downloads run
``download.workers`` at a time, and a product that fails is recorded in the manifest and the
stage result with its reason while the others carry on.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from firedpy_nrt.atomic import require_inside
from firedpy_nrt.config.download import DownloadConfig
from firedpy_nrt.config.prepare import PrepareConfig
from firedpy_nrt.errors import CredentialsError, DataError, DownloadError, FiredpyError
from firedpy_nrt.prepare.download.archive import ExtractLimits, archive_kind, extract
from firedpy_nrt.prepare.download.cdse import BearerAuth, CdseCatalogue, CdseProvider, TokenSource
from firedpy_nrt.prepare.download.credentials import (
    cdse_credentials,
    dhus_credentials,
    scrub,
    scrubbed_logs,
)
from firedpy_nrt.prepare.download.manifest import COMPLETE, FAILED, Manifest
from firedpy_nrt.prepare.download.product import Product, Provider, search_window, select
from firedpy_nrt.prepare.download.stac import StacProvider
from firedpy_nrt.prepare.download.transfer import TransferSettings, file_md5, part_path
from firedpy_nrt.prepare.events import FireEvent, events_of
from firedpy_nrt.prepare.pipeline import StageResult

log = logging.getLogger(__name__)

__all__ = ["run_stage", "download_events", "build_providers"]


@dataclass
class _Job:
    event: FireEvent
    product: Product
    provider: Provider
    manifest: Manifest
    folder: Path


def build_providers(
    dl: DownloadConfig, satellites: list[str], rgb: bool = False
) -> dict[str, Provider]:
    """One provider per satellite; credentials are read (and checked present) here. ``rgb``:
    STAC providers also read the RGB assets (the dnbr stage draws RGB)."""
    settings = TransferSettings.of(dl)
    policy = settings.policy
    providers: dict[str, Provider] = {}
    for satellite in satellites:
        chosen = dl.sentinel_provider if satellite == "sentinel" else dl.landsat_provider
        if chosen == "stac":
            providers[satellite] = StacProvider(satellite, dl, rgb=rgb)
    needs_cdse = "sentinel" in satellites and dl.sentinel_provider == "cdse"
    if needs_cdse:
        credentials = cdse_credentials(urlparse(dl.cdse.token_url).hostname)
        tokens = TokenSource(
            dl.cdse, credentials, policy, (dl.connect_timeout_s, dl.read_timeout_s)
        )
        auth = BearerAuth(tokens, dl.cdse)
        catalogue = CdseCatalogue(dl, policy)
        providers["sentinel"] = CdseProvider("sentinel", dl, catalogue, auth, settings)
    if "sentinel" in satellites and dl.sentinel_provider == "dhus":
        from firedpy_nrt.prepare.download.dhus import DhusProvider

        host = urlparse(dl.dhus.api_url or "").hostname or ""
        providers["sentinel"] = DhusProvider(dl, dhus_credentials(host), settings)
    return providers


def run_stage(cfg: PrepareConfig) -> StageResult:
    """Download the scenes of ``cfg.events`` (``event_ids``) for ``cfg.satellite``."""
    dl = cfg.download
    events = events_of(cfg, "download")
    satellites = ["sentinel", "landsat"] if cfg.satellite == "both" else [str(cfg.satellite)]
    with scrubbed_logs():
        try:
            providers = build_providers(dl, satellites, rgb=cfg.dnbr.rgb.enabled)
            return download_events(
                events,
                providers,
                Path(cfg.paths.data_dir) / "scenes",
                dl,
                overwrite=cfg.overwrite,
            )
        except FiredpyError as exc:
            # Whatever went wrong, the one line the user sees carries no secret.
            raise type(exc)(scrub(str(exc))) from None


def download_events(
    events: list[FireEvent],
    providers: dict[str, Provider],
    scenes_dir: Path,
    dl: DownloadConfig,
    overwrite: bool = False,
) -> StageResult:
    """Search every event with every provider, then fetch what is not there yet."""
    result = StageResult("download")
    jobs: list[_Job] = []
    for event in events:
        event_dir = scenes_dir / event.id
        manifest = Manifest(event_dir, event)
        start, end = search_window(event, dl.days_before, dl.days_after)
        for satellite, provider in providers.items():
            found = provider.search(event, start, end)
            products = select(found, event, dl.scenes_per_side)
            if not products:
                empty = (
                    f"fire {event.id} {satellite}: no products from {provider.name} between "
                    f"{start} and {end} (cloud cover <= {dl.cloud_cover}%)"
                )
                log.warning(empty)
                if not dl.empty_ok:  # the exit code says so (download.empty_ok=true accepts it)
                    result.failed.append(f"{empty}; download.empty_ok=true accepts this")
            else:
                log.info(
                    "fire %s %s: %d products (%d found) between %s and %s",
                    event.id,
                    satellite,
                    len(products),
                    len(found),
                    start,
                    end,
                )
            for product in products:
                folder = require_inside(
                    event_dir / satellite / product.folder_name, scenes_dir, "product folder"
                )
                if not overwrite and folder.is_dir():
                    # Folders appear only by a rename after a full extraction, so it is whole.
                    _keep_existing(manifest, product)
                    result.skipped += 1
                    continue
                jobs.append(_Job(event, product, provider, manifest, folder))
        manifest.save()

    if not jobs:
        return result
    cancelled = threading.Event()
    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=dl.workers, thread_name_prefix="download") as pool:
        futures = {pool.submit(_run_job, job, dl, overwrite, cancelled): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                error = future.result()
            except Exception as exc:  # a bug in one job must not hide the others' results
                log.exception("%s: unexpected error", job.product.label(job.event.id))
                error = f"unexpected {type(exc).__name__}: {exc}"
                job.manifest.record(job.product, FAILED, error)
            with lock:
                if error is None:
                    result.written += 1
                else:
                    result.failed.append(scrub(f"{job.product.label(job.event.id)}: {error}"))
    return result


def _keep_existing(manifest: Manifest, product: Product) -> None:
    """A product folder is already there: record it complete, unless the catalogue's checksum
    changed since (a reprocessed product), which only ``overwrite=true`` replaces."""
    entry = manifest.entry(product) or {}
    recorded = (entry.get("checksum") or {}).get("value")
    if recorded and product.md5 and recorded.lower() != product.md5.lower():
        log.warning(
            "%s: the catalogue's checksum changed since it was downloaded; keeping the "
            "existing folder (overwrite=true replaces it)",
            product.name,
        )
    elif entry.get("status") != COMPLETE:
        manifest.record(product, COMPLETE)


def _reusable_archive(archive: Path, product: Product) -> bool:
    """An archive left by a run that stopped before extracting, still matching its checksum."""
    if not archive.is_file():
        return False
    if product.md5:
        return file_md5(archive) == product.md5.lower()
    return product.size is not None and archive.stat().st_size == product.size


def _run_job(
    job: _Job, dl: DownloadConfig, overwrite: bool, cancelled: threading.Event
) -> str | None:
    """Download and extract one product; return None, or why it failed."""
    product, label = job.product, job.product.label(job.event.id)
    if cancelled.is_set():
        reason = "not attempted: the credentials were refused"
        job.manifest.record(product, FAILED, reason)
        return reason
    archive = job.folder.parent / product.archive_name
    try:
        job.folder.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            part_path(archive).unlink(missing_ok=True)
        if hasattr(job.provider, "fetch"):  # reads the window of each asset into the folder
            job.provider.fetch(product, job.folder, job.event)
            job.manifest.record(product, COMPLETE)
            log.info("%s: complete", label)
            return None
        if overwrite or not _reusable_archive(archive, product):
            archive.unlink(missing_ok=True)
            log.info("%s: downloading (%s bytes)", label, product.size or "?")
            job.provider.download(product, archive)
        limits = ExtractLimits(
            max_bytes=int(dl.max_extract_gb * (1 << 30)), max_ratio=dl.max_compression_ratio
        )
        extract(archive, job.folder, overwrite=overwrite, limits=limits)
        if dl.keep_archives:
            # Kept apart from the product folders, so a reader of sentinel/ and landsat/ sees
            # each product once.
            kept_dir = job.folder.parent.parent / "archives" / product.satellite
            kept_dir.mkdir(parents=True, exist_ok=True)
            archive.replace(kept_dir / f"{archive.stem}.{archive_kind(archive)}")
        else:
            archive.unlink()
    except CredentialsError as exc:
        cancelled.set()
        reason = scrub(str(exc))
    except (DownloadError, DataError) as exc:
        reason = scrub(str(exc))
        if any(
            w in reason
            for w in ("refused member", "archive bomb", "the archive declares", "corrupt")
        ):
            # The archive matched its checksum, so fetching it again would give the same bytes.
            archive.unlink(missing_ok=True)
    except OSError as exc:
        reason = scrub(f"{type(exc).__name__}: {exc}")
    else:
        job.manifest.record(product, COMPLETE)
        log.info("%s: complete", label)
        return None
    reason = reason.removeprefix(f"{product.name}: ")
    job.manifest.record(product, FAILED, reason)
    log.error("%s: failed: %s", label, reason)
    return reason
