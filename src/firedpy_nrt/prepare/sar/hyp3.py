"""ASF HyP3 on-demand InSAR jobs through hyp3-sdk: found by name before paying again,
submitted together, waited for, and their product zips downloaded (resumable).

hyp3-sdk is given a session of ours: every request has a timeout and retries transient
failures, the bearer token goes only to ``sar.hyp3_url``'s origin (not to a ``next`` link or a
redirect elsewhere), and paging stops after ``sar.max_pages``. Product URLs are public and get
no credential.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from hyp3_sdk import HyP3
from hyp3_sdk.exceptions import HyP3SDKError
from hyp3_sdk.jobs import Job

from firedpy_nrt.config.sar import SarConfig
from firedpy_nrt.errors import CredentialsError, DownloadError, first_line
from firedpy_nrt.prepare.download.credentials import scrub
from firedpy_nrt.prepare.download.product import safe_name
from firedpy_nrt.prepare.download.retry import RetryPolicy, send
from firedpy_nrt.prepare.download.transfer import (
    NoAuth,
    TransferSettings,
    as_sent,
    download,
    origin,
    plain_session,
)

log = logging.getLogger(__name__)

#: Best first: a job that is done beats one that runs, which beats one that waits.
_STATUS_RANK = {"SUCCEEDED": 0, "RUNNING": 1, "PENDING": 2}


class _Hyp3Session(requests.Session):
    """Timeouts, retries, a page budget and the token for HyP3's origin only."""

    def __init__(
        self, api_url: str, token: str, policy: RetryPolicy, timeout: tuple[float, float]
    ) -> None:
        super().__init__()
        self.auth = as_sent  # no ~/.netrc password from requests
        self._origin = origin(api_url)
        self._token = token
        self.policy = policy
        self.timeout = timeout
        self.budget: int | None = None

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.budget is not None:
            if self.budget <= 0:
                raise DownloadError(f"HyP3 at {self._origin}: too many pages of jobs")
            self.budget -= 1
        headers = dict(kwargs.pop("headers", None) or {})
        headers.pop("Authorization", None)
        if origin(url) == self._origin:
            headers["Authorization"] = f"Bearer {self._token}"
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("allow_redirects", False)
        # retry.send retries connection failures and transient statuses as every client of ours
        response = send(
            super(), method, url, self.policy, f"HyP3 at {self._origin}", headers=headers, **kwargs
        )
        if response.status_code in (401, 403):
            raise CredentialsError(
                f"HyP3 at {self._origin} refused the Earthdata token (HTTP "
                f"{response.status_code}); is the account approved for HyP3?"
            )
        return response


@dataclass(frozen=True)
class PairRequest:
    """One InSAR pair to process: the job's name and its two SLC scenes (older first)."""

    name: str
    reference: str
    secondary: str


def job_name(event_id: str, first: dt.date, second: dt.date) -> str:
    """The name a later run looks the job up by (HyP3 allows 100 characters)."""
    return f"firedpy-{event_id}-{first:%Y%m%d}-{second:%Y%m%d}"[:100]


class Hyp3Jobs:
    """Find, submit, watch and fetch the InSAR jobs of one HyP3 account."""

    def __init__(
        self, cfg: SarConfig, token: str, policy: RetryPolicy, settings: TransferSettings
    ) -> None:
        self.cfg = cfg
        self.settings = settings
        self.server = origin(cfg.hyp3_url)
        timeout = (settings.connect_timeout_s, settings.read_timeout_s)
        self.client = HyP3(api_url=cfg.hyp3_url, token=token)
        self.client.session = _Hyp3Session(cfg.hyp3_url, token, policy, timeout)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        session: _Hyp3Session = self.client.session  # type: ignore[assignment]
        session.budget = self.cfg.max_pages
        try:
            return fn(*args, **kwargs)
        except (DownloadError, CredentialsError):
            raise
        except (HyP3SDKError, requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise DownloadError(
                scrub(f"HyP3 at {self.server}: {what}: {first_line(exc)}")
            ) from None
        finally:
            session.budget = None

    def _matches(self, job: Job, pair: PairRequest) -> bool:
        params = job.job_parameters or {}
        granules = sorted(str(g) for g in params.get("granules") or [])
        if job.job_type != self.cfg.hyp3_job_type or job.name != pair.name:
            return False
        if granules != sorted([pair.reference, pair.secondary]):
            return False
        if str(params.get("looks", "20x4")) != self.cfg.hyp3_looks:
            return False
        if job.failed():
            return False
        expires = job.expiration_time
        if job.succeeded() and expires is not None:
            now = dt.datetime.now(expires.tzinfo) if expires.tzinfo else dt.datetime.now()
            if expires <= now:
                log.info("HyP3 job %s (%s) has expired; it is made again", job.job_id, job.name)
                return False
        return True

    def find(self, pair: PairRequest) -> Job | None:
        """The best existing job for ``pair`` (same name, scenes and looks; not failed)."""
        batch = self._call(f"looking up job {pair.name}", self.client.find_jobs, name=pair.name)
        jobs = [j for j in batch.jobs if self._matches(j, pair)]
        if not jobs:
            return None
        jobs.sort(key=lambda j: (_STATUS_RANK.get(j.status_code, 3), -j.request_time.timestamp()))
        return jobs[0]

    def submit(self, pairs: list[PairRequest]) -> list[Job]:
        """Submit every pair in one request (HyP3 charges credits per job)."""
        if not pairs:
            return []
        prepared = [
            HyP3.prepare_insar_job(p.reference, p.secondary, name=p.name, looks=self.cfg.hyp3_looks)
            for p in pairs
        ]
        batch = self._call("submitting jobs", self.client.submit_prepared_jobs, prepared)
        jobs = list(batch.jobs)
        if len(jobs) != len(pairs):
            raise DownloadError(
                f"HyP3 at {self.server}: {len(pairs)} jobs submitted, {len(jobs)} acknowledged"
            )
        for job in jobs:
            log.info("HyP3: submitted %s job %s (%s)", job.job_type, job.job_id, job.name)
        return jobs

    def refresh(self, job: Job) -> Job:
        return self._call(f"job {job.job_id}", self.client.get_job_by_id, job.job_id)

    def wait(self, jobs: list[Job]) -> tuple[list[Job], list[Job]]:
        """Poll until every job is complete or ``sar.hyp3_timeout_s`` passes; return the jobs
        as last seen, and those still waiting (empty when all completed)."""
        deadline = time.monotonic() + self.cfg.hyp3_timeout_s
        current = {j.job_id: j for j in jobs}
        while True:
            waiting = [j for j in current.values() if not j.complete()]
            if not waiting:
                return list(current.values()), []
            if time.monotonic() >= deadline:
                return list(current.values()), waiting
            counts: dict[str, int] = {}
            for job in current.values():
                counts[job.status_code] = counts.get(job.status_code, 0) + 1
            log.info(
                "HyP3: %s; next look in %.0f s",
                ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())),
                self.cfg.hyp3_poll_s,
            )
            time.sleep(min(self.cfg.hyp3_poll_s, max(0.0, deadline - time.monotonic())))
            for job in waiting:
                current[job.job_id] = self.refresh(job)

    def fetch(self, job: Job, folder: Path) -> Path:
        """The job's product zip in ``folder`` (resumed if a part is there; kept if complete)."""
        files = [f for f in job.files or [] if str(f.get("filename", "")).endswith(".zip")]
        if not files:
            raise DownloadError(f"HyP3 job {job.job_id} ({job.name}) lists no product zip")
        entry = files[0]
        name = safe_name(str(entry["filename"]), "HyP3 product name")
        dest = folder / name
        size = entry.get("size")
        size = int(size) if isinstance(size, (int, float)) else None
        if dest.is_file() and (size is None or dest.stat().st_size == size):
            return dest
        url = str(entry.get("url", ""))
        if not url.startswith(("http://", "https://")):
            raise DownloadError(f"HyP3 job {job.job_id}: product URL is not http(s)")
        with plain_session() as session:
            download(
                session, url, dest, auth=NoAuth(), size=size, settings=self.settings, label=name
            )
        return dest
