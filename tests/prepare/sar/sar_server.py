"""One HTTP server on 127.0.0.1 standing in for the four services the SAR stage uses.

- Earthdata Login: ``POST /edl/api/users/find_or_create_token`` with HTTP Basic, answering
  ``{"access_token", "token_type": "Bearer", "expiration_date"}`` (401 otherwise).
- NASA CMR: ``GET /cmr/granules.umm_json``, UMM-G JSON shaped after real OPERA RTC-S1 records
  (``hits``/``took``/``items[{meta, umm}]``, ``CMR-Hits`` and ``CMR-Search-After`` headers);
  CMR's default page size of 10; 400 ``{"errors": [...]}`` on a parameter it does not know.
- ASF's data pool: ``/datapool/<file>``, either served to a valid bearer token (``direct``) or
  redirected (307) to a pre-signed URL on another host name (``http://localhost:<port>/s3/``)
  that answers 400 to any ``Authorization`` header, as S3 does. Both answer ``Range``.
- HyP3: ``GET/POST /hyp3/jobs``, ``GET /hyp3/jobs/<id>`` with a bearer token; jobs move
  PENDING -> RUNNING -> SUCCEEDED as they are polled; their product zips (made by the test's
  ``product`` callback) are public at ``/products/<job id>/<file>`` with ``Range``.

Every request is recorded (method, host, path, headers) for the tests' assertions.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from shapely.geometry import box

CMR_PARAMS = {"short_name", "bounding_box", "temporal", "page_size", "polygon", "sort_key"}


@dataclass
class Request:
    method: str
    host: str
    path: str
    headers: dict[str, str]


@dataclass
class SarState:
    port: int = 0
    username: str = "fire-scientist"
    password: str = "pw-" + secrets.token_hex(8)
    token: str = "edl-" + secrets.token_hex(16)
    granules: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    #: "redirect": to a pre-signed URL on another host name; "redirect-same": to a pre-signed URL
    #: on this same origin; "direct": served to the bearer token.
    datapool: str = "redirect"
    ranges: bool = True  # False: Range headers are ignored (200 with the whole file)
    #: Polls of a job (GET /jobs/<id>) before it moves on: PENDING, then RUNNING, then done.
    steps: int = 1
    fail_jobs: bool = False
    product: Callable[[list[str]], tuple[str, bytes]] | None = None
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)
    products: dict[str, bytes] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def data_url(self, name: str) -> str:
        return f"{self.root}/datapool/RTC/OPERA-S1/{name}"

    def paths(self, prefix: str, method: str | None = None) -> list[Request]:
        return [
            r
            for r in self.requests
            if r.path.startswith(prefix) and (method is None or r.method == method)
        ]


def _umm_matches(record: dict[str, Any], params: dict[str, str]) -> bool:
    umm = record["umm"]
    if params.get("short_name") and umm["CollectionReference"]["ShortName"] != params["short_name"]:
        return False
    if "bounding_box" in params:
        w, s, e, n = (float(v) for v in params["bounding_box"].split(","))
        points = umm["SpatialExtent"]["HorizontalSpatialDomain"]["Geometry"]["GPolygons"][0][
            "Boundary"
        ]["Points"]
        lons = [p["Longitude"] for p in points]
        lats = [p["Latitude"] for p in points]
        if not box(min(lons), min(lats), max(lons), max(lats)).intersects(box(w, s, e, n)):
            return False
    if "temporal" in params:
        start, _, end = params["temporal"].partition(",")
        begin = umm["TemporalExtent"]["RangeDateTime"]["BeginningDateTime"]

        def parse(text: str) -> dt.datetime:
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))

        if (start and parse(begin) < parse(start)) or (end and parse(begin) > parse(end)):
            return False
    return True


def _handler(state: SarState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _record(self) -> None:
            with state.lock:
                state.requests.append(
                    Request(
                        self.command,
                        self.headers.get("Host", ""),
                        urlparse(self.path).path,
                        {k: v for k, v in self.headers.items()},
                    )
                )

        def _send(
            self,
            status: int,
            body: bytes,
            headers: dict[str, str] | None = None,
            content_type: str = "application/json",
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(body).encode(), headers)

        def _bytes(self, data: bytes, ranges: bool = True) -> None:
            rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if not ranges:
                rng = None
            if rng:
                a = int(rng.group(1))
                b = int(rng.group(2)) if rng.group(2) else len(data) - 1
                b = min(b, len(data) - 1)
                if a >= len(data):
                    self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    return
                self._send(
                    206,
                    data[a : b + 1],
                    {"Content-Range": f"bytes {a}-{b}/{len(data)}", "Accept-Ranges": "bytes"},
                    "application/octet-stream",
                )
                return
            self._send(200, data, {"Accept-Ranges": "bytes"}, "application/octet-stream")

        def _bearer_ok(self) -> bool:
            return self.headers.get("Authorization", "") == f"Bearer {state.token}"

        # -- Earthdata Login ---------------------------------------------------------------
        def _edl_token(self) -> None:
            expected = base64.b64encode(f"{state.username}:{state.password}".encode()).decode()
            if self.headers.get("Authorization", "") != f"Basic {expected}":
                self._json(
                    401,
                    {
                        "error": "invalid_credentials",
                        "error_description": "Invalid user credentials",
                    },
                )
                return
            self._json(
                200,
                {
                    "access_token": state.token,
                    "token_type": "Bearer",
                    "expiration_date": "1/30/2027",
                },
            )

        # -- CMR -----------------------------------------------------------------------------
        def _cmr(self, query: dict[str, list[str]]) -> None:
            for key in query:
                base = key.split("[")[0]
                if base not in CMR_PARAMS:
                    self._json(400, {"errors": [f"Parameter [{key}] was not recognized."]})
                    return
            params = {k: v[0] for k, v in query.items()}
            hits = [g for g in state.granules if _umm_matches(g, params)]
            size = int(params.get("page_size", "10"))
            offset = 0
            after = self.headers.get("CMR-Search-After")
            if after:
                offset = json.loads(after)[0]
            page = hits[offset : offset + size]
            headers = {"CMR-Hits": str(len(hits)), "CMR-Took": "12"}
            if page:
                last = page[-1]["meta"]["concept-id"]
                headers["CMR-Search-After"] = json.dumps([offset + len(page), last])
            self._json(200, {"hits": len(hits), "took": 12, "items": page}, headers)

        # -- data pool and "S3" -----------------------------------------------------------
        def _datapool(self, name: str) -> None:
            if name not in state.files:
                self._json(404, {"error": "not found"})
                return
            if state.datapool == "direct":
                if not self._bearer_ok():
                    self._json(401, {"error": "Unauthorized"})
                    return
                self._bytes(state.files[name], state.ranges)
                return
            if not self._bearer_ok():  # the real one sends a browser to Earthdata Login
                self._send(302, b"", {"Location": f"{state.root}/edl/oauth/authorize"})
                return
            signed = (
                f"http://localhost:{state.port}/s3/{name}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                f"&X-Amz-Signature={secrets.token_hex(16)}"
            )
            self._send(307, b"", {"Location": signed})

        def _s3(self, name: str) -> None:
            if "Authorization" in self.headers:
                body = (
                    b'<?xml version="1.0"?><Error><Code>InvalidArgument</Code><Message>'
                    b"Only one auth mechanism allowed</Message></Error>"
                )
                self._send(400, body, content_type="application/xml")
                return
            if name not in state.files:
                self._send(404, b"<Error><Code>NoSuchKey</Code></Error>")
                return
            self._bytes(state.files[name], state.ranges)

        # -- HyP3 --------------------------------------------------------------------------
        def _job_view(self, job: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in job.items() if not (k == "files" and not v)}

        def _advance(self, job_id: str) -> None:
            job = state.jobs[job_id]
            state.polls[job_id] = state.polls.get(job_id, 0) + 1
            n = state.polls[job_id]
            if job["status_code"] == "PENDING" and n >= state.steps:
                job["status_code"] = "RUNNING"
            elif job["status_code"] == "RUNNING" and n >= 2 * state.steps:
                if state.fail_jobs:
                    job["status_code"] = "FAILED"
                    return
                job["status_code"] = "SUCCEEDED"
                assert state.product is not None
                filename, data = state.product(job["job_parameters"]["granules"])
                state.products[f"{job_id}/{filename}"] = data
                job["files"] = [
                    {
                        "filename": filename,
                        "size": len(data),
                        "url": f"{state.root}/products/{job_id}/{filename}",
                        "s3": {"bucket": "hyp3-contentbucket", "key": f"{job_id}/{filename}"},
                    }
                ]
                job["browse_images"] = []
                job["thumbnail_images"] = []
                job["logs"] = []
                job["expiration_time"] = (
                    dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=14)
                ).isoformat()
                job["processing_times"] = [600.0]

        def _hyp3(self, rest: str, query: dict[str, list[str]]) -> None:
            if not self._bearer_ok():
                self._json(401, {"detail": "No authorization token provided"})
                return
            if self.command == "POST" and rest == "jobs":
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                made = []
                for spec in body.get("jobs", []):
                    granules = spec.get("job_parameters", {}).get("granules", [])
                    if spec.get("job_type") != "INSAR_GAMMA" or len(granules) != 2:
                        self._json(
                            400,
                            {
                                "detail": "bad job",
                                "status": 400,
                                "title": "Bad Request",
                                "type": "about:blank",
                            },
                        )
                        return
                    job_id = str(uuid.uuid4())
                    job = {
                        "job_id": job_id,
                        "job_type": spec["job_type"],
                        "job_parameters": {**spec["job_parameters"]},
                        "name": spec.get("name"),
                        "request_time": dt.datetime.now(dt.timezone.utc).isoformat(),
                        "status_code": "PENDING",
                        "user_id": state.username,
                        "credit_cost": 10.0,
                        "priority": 9999,
                    }
                    state.jobs[job_id] = job
                    made.append(self._job_view(job))
                self._json(200, {"jobs": made})
                return
            if self.command == "GET" and rest == "jobs":
                name = (query.get("name") or [None])[0]
                jobs = [
                    self._job_view(j)
                    for j in state.jobs.values()
                    if name is None or j.get("name") == name
                ]
                self._json(200, {"jobs": jobs})
                return
            match = re.fullmatch(r"jobs/([0-9a-f-]+)", rest)
            if self.command == "GET" and match and match.group(1) in state.jobs:
                with state.lock:
                    self._advance(match.group(1))
                self._json(200, self._job_view(state.jobs[match.group(1)]))
                return
            self._json(
                404,
                {"detail": "not found", "status": 404, "title": "Not Found", "type": "about:blank"},
            )

        def _route(self) -> None:
            self._record()
            url = urlparse(self.path)
            query = parse_qs(url.query)
            path = url.path
            host = self.headers.get("Host", "")
            if host.startswith("localhost") and path.startswith("/s3/"):
                self._s3(path[len("/s3/") :])
            elif path.startswith("/s3/"):
                self._send(403, b"<Error><Code>AccessDenied</Code></Error>")
            elif path == "/edl/api/users/find_or_create_token" and self.command == "POST":
                self._edl_token()
            elif path == "/cmr/granules.umm_json" and self.command == "GET":
                self._cmr(query)
            elif path.startswith("/datapool/RTC/OPERA-S1/"):
                self._datapool(path.rsplit("/", 1)[1])
            elif path.startswith("/hyp3/"):
                self._hyp3(path[len("/hyp3/") :], query)
            elif path.startswith("/products/"):
                key = path[len("/products/") :]
                if key in state.products:
                    self._bytes(state.products[key])
                else:
                    self._send(404, b"")
            else:
                self._json(404, {"error": "not found"})

        do_GET = _route
        do_POST = _route
        do_HEAD = _route

    return Handler


class SarServer:
    def __init__(self) -> None:
        self.state = SarState()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.state.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> SarState:
        self.thread.start()
        return self.state

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
