"""A loopback Copernicus Data Space: identity service, paged OData catalogue, download service.

It speaks the subset the download stage uses, with faults a test can switch on per product:
``cut`` (drop the connection mid-file once), ``throttle`` (429 + Retry-After once), ``unavailable``
(503 + Retry-After once), ``bad_md5`` (advertise a wrong checksum), ``revoke`` (refuse the
current token once, as after an expiry). Every request is recorded for assertions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
import sys
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import shapely
from shapely.geometry import Polygon

S2_NAME = "S2A_MSIL2A_{date}T180911_N0500_R041_T12SVC_{date}T215853.SAFE"
LANDSAT_NAME = "LC08_L2SP_037036_{date}_{date2}_02_T1"
USERNAME = "fire.scientist@example.org"
PASSWORD = "s3cret-Pa55word!"

#: The test fire's outline (near Flagstaff) and one far away that no product covers.
FIRE = Polygon([(-111.70, 35.20), (-111.60, 35.20), (-111.60, 35.28), (-111.70, 35.28)])
FOOTPRINT = Polygon([(-112.2, 34.8), (-110.9, 34.8), (-110.9, 35.8), (-112.2, 35.8)])

sys.path.insert(0, str(Path(__file__).resolve().parent))


def safe_zip(name: str, extra: dict[str, bytes] | None = None, payload: int = 50_000) -> bytes:
    """A Sentinel-2 L2A zip: ``<name>/manifest.safe`` and two band files (random-ish bytes)."""
    stem = name.removesuffix(".SAFE")
    buffer = io.BytesIO()
    blob = hashlib.sha256(name.encode()).digest() * (payload // 32 + 1)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{name}/manifest.safe", f"<manifest>{stem}</manifest>")
        granule = f"{name}/GRANULE/L2A_T12SVC/IMG_DATA/R20m"
        zf.writestr(f"{granule}/T12SVC_{stem[11:26]}_B8A_20m.jp2", blob[:payload])
        zf.writestr(f"{granule}/T12SVC_{stem[11:26]}_B12_20m.jp2", blob[::-1][:payload])
        for member, data in (extra or {}).items():
            zf.writestr(member, data)
    return buffer.getvalue()


def landsat_tar(product_id: str) -> bytes:
    """A Landsat C2 L2 product as a tar of ``<id>/<id>_SR_B5.TIF`` and friends."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for suffix in ("SR_B5.TIF", "SR_B7.TIF", "QA_PIXEL.TIF", "MTL.xml"):
            data = f"{product_id} {suffix}".encode() * 500
            info = tarfile.TarInfo(f"{product_id}/{product_id}_{suffix}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class FakeProduct:
    id: str
    name: str
    collection: str
    sensing: dt.datetime
    data: bytes
    cloud: float = 10.0
    faults: set[str] = field(default_factory=set)
    footprint: Polygon = FOOTPRINT
    product_type: str = ""

    @property
    def md5(self) -> str:
        if "bad_md5" in self.faults:
            return "0" * 32
        return hashlib.md5(self.data).hexdigest()

    def odata(self) -> dict:
        body = self._odata()
        if "bad_date" in self.faults:  # a catalogue that sends what is not a date
            body["ContentDate"]["Start"] = "sometime in May"
        if "checksum_not_object" in self.faults:
            body["Checksum"] = [f"MD5:{self.md5}"]
        return body

    def _odata(self) -> dict:
        return {
            "@odata.mediaContentType": "application/octet-stream",
            "Id": self.id,
            "Name": self.name,
            "ContentType": "application/octet-stream",
            "ContentLength": len(self.data) + (100 if "wrong_size" in self.faults else 0),
            "OriginDate": self.sensing.isoformat() + "Z",
            "Online": True,
            "ContentDate": {
                "Start": self.sensing.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "End": self.sensing.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
            "Checksum": [
                {"Value": self.md5, "Algorithm": "MD5", "ChecksumDate": "2024-01-01T00:00:00Z"},
                {"Value": "ab" * 32, "Algorithm": "BLAKE3", "ChecksumDate": "2024-01-01T00:00:00Z"},
            ],
            "Attributes": [
                {
                    "@odata.type": "#OData.CSC.StringAttribute",
                    "Name": "productType",
                    "Value": self.product_type,
                    "ValueType": "String",
                },
                {
                    "@odata.type": "#OData.CSC.DoubleAttribute",
                    "Name": "cloudCover",
                    "Value": self.cloud,
                    "ValueType": "Double",
                },
            ],
        }


@dataclass
class Request:
    method: str
    path: str
    host: str
    headers: dict[str, str]
    time: float
    status: int = 0


class FakeCdse:
    """State of the loopback service: products, tokens, faults and the request log."""

    def __init__(self) -> None:
        self.products: dict[str, FakeProduct] = {}
        self.requests: list[Request] = []
        self.tokens: dict[str, float] = {}  # access token -> expiry (time.time())
        self.refresh_tokens: dict[str, float] = {}
        self.issued: list[str] = []  # every token and refresh token handed out
        self.grants: list[str] = []
        self.expires_in = 600
        self.retry_after = "0.3"
        self.next_link_key = "@odata.nextLink"
        self.fired: set[tuple[str, str]] = set()  # (product id, fault) already injected once
        self.throttle_search = 0  # answer this many searches with 429 first
        self.download_delay = 0.0  # seconds each file transfer takes (to see concurrency)
        self.endless_pages = False  # every search page links to yet another next page
        self.trickle_s = 0.0  # send product bodies a byte at a time, this long apart
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        self.port = 0
        self._counter = 0

    username = USERNAME
    password = PASSWORD
    safe_zip = staticmethod(safe_zip)

    def sentinel(self, pid: str, date: str, faults: set[str] | None = None, **kw) -> FakeProduct:
        """Add a Sentinel-2 L2A product sensed on ``date`` (YYYYMMDD)."""
        name = S2_NAME.format(date=date)
        return self.add(
            FakeProduct(
                id=pid,
                name=name,
                collection="SENTINEL-2",
                product_type="S2MSI2A",
                sensing=dt.datetime.strptime(date + "T180911", "%Y%m%dT%H%M%S"),
                data=kw.pop("data", None) or safe_zip(name),
                faults=faults or set(),
                **kw,
            )
        )

    def landsat(self, pid: str, date: str, collection: str = "LANDSAT-8") -> FakeProduct:
        """Add a Landsat C2 L2 product (a tar) sensed on ``date``."""
        name = LANDSAT_NAME.format(date=date, date2="20200820")
        if collection == "LANDSAT-9":
            name = "LC09" + name[4:]
        return self.add(
            FakeProduct(
                id=pid,
                name=name,
                collection=collection,
                product_type="L2SP",
                sensing=dt.datetime.strptime(date + "T174500", "%Y%m%dT%H%M%S"),
                data=landsat_tar(name),
            )
        )

    # --- set-up helpers ---
    def add(self, product: FakeProduct) -> FakeProduct:
        self.products[product.id] = product
        return product

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def config(self) -> dict:
        """``download.*`` overrides pointing at this server, with tiny backoffs."""
        return {
            "cdse": {
                "token_url": self.url("/auth/realms/CDSE/protocol/openid-connect/token"),
                "catalogue_url": self.url("/odata/v1"),
                "download_url": self.url("/download/odata/v1"),
                # The download service redirects to another host (here: 'localhost').
                "trusted_hosts": [".dataspace.copernicus.eu", "localhost"],
            },
            "backoff_s": 0.01,
            "backoff_max_s": 0.05,
            "retries": 2,
            "progress": False,
            "workers": 2,
        }

    def new_token(self, kind: str) -> str:
        with self.lock:
            self._counter += 1
            return f"{kind}-{self._counter}-{hashlib.sha1(str(time.time()).encode()).hexdigest()}"

    def once(self, product: FakeProduct, fault: str) -> bool:
        """True the first time ``fault`` is hit for ``product`` (a transient fault)."""
        with self.lock:
            if fault in product.faults and (product.id, fault) not in self.fired:
                self.fired.add((product.id, fault))
                return True
        return False

    def downloads_of(self, product_id: str) -> list[Request]:
        return [r for r in self.requests if f"Products({product_id})" in r.path]


def _make_handler(state: FakeCdse) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output quiet
            pass

        def _record(self, status: int) -> None:
            state.requests.append(
                Request(
                    self.command,
                    self.path,
                    self.headers.get("Host", ""),
                    dict(self.headers),
                    time.time(),
                    status,
                )
            )

        def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self._record(status)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        # --- identity service ---
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if not self.path.endswith("/token"):
                return self._json(404, {"error": "not found"})
            if form.get("client_id") != "cdse-public":
                return self._json(401, {"error": "invalid_client"})
            grant = form.get("grant_type")
            if grant == "password":
                if form.get("username") != USERNAME or form.get("password") != PASSWORD:
                    return self._json(401, {"error": "invalid_grant"})
            elif grant == "refresh_token":
                expiry = state.refresh_tokens.get(form.get("refresh_token", ""), 0)
                if expiry < time.time():
                    return self._json(400, {"error": "invalid_grant"})
            else:
                return self._json(400, {"error": "unsupported_grant_type"})
            access, refresh = state.new_token("access"), state.new_token("refresh")
            state.tokens[access] = time.time() + state.expires_in
            state.refresh_tokens[refresh] = time.time() + 3600
            state.issued += [access, refresh]
            state.grants.append(grant)
            self._json(
                200,
                {
                    "access_token": access,
                    "expires_in": state.expires_in,
                    "refresh_expires_in": 3600,
                    "refresh_token": refresh,
                    "token_type": "Bearer",
                },
            )

        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            if parsed.path == "/odata/v1/Products":
                return self._search(parse_qs(parsed.query))
            match = re.fullmatch(r"/download/odata/v1/Products\((.+)\)/\$value", parsed.path)
            if match:
                return self._redirect(match.group(1))
            match = re.fullmatch(r"/zipper/odata/v1/Products\((.+)\)/\$value", parsed.path)
            if match:
                return self._download(match.group(1))
            self._json(404, {"detail": "not found"})

        # --- catalogue ---
        def _search(self, query: dict) -> None:
            if state.throttle_search:
                state.throttle_search -= 1
                return self._json(429, {"detail": "slow down"}, {"Retry-After": state.retry_after})
            flt = query.get("$filter", [""])[0]
            top = int(query.get("$top", ["20"])[0])
            skip = int(query.get("$skip", ["0"])[0])
            if not flt:
                return self._json(400, {"detail": "a $filter is required"})
            collections = re.findall(r"Collection/Name eq '([^']+)'", flt)
            area = re.search(r"SRID=4326;(POLYGON\(\(.+?\)\))'", flt)
            start = re.search(r"ContentDate/Start gt (\S+)", flt)
            end = re.search(r"ContentDate/Start lt (\S+)", flt)
            cloud = re.search(
                r"'cloudCover' and att/OData.CSC.DoubleAttribute/Value le ([\d.]+)", flt
            )
            ptype = re.search(
                r"'productType' and att/OData.CSC.StringAttribute/Value eq '(\w+)'", flt
            )
            contains = re.search(r"contains\(Name,'([^']+)'\)", flt)
            if not (collections and area and start and end and cloud):
                return self._json(400, {"detail": f"unsupported filter: {flt}"})
            outline = shapely.from_wkt(area.group(1))
            t0 = dt.datetime.fromisoformat(start.group(1).replace("Z", ""))
            t1 = dt.datetime.fromisoformat(end.group(1).replace("Z", ""))
            hits = [
                p
                for p in sorted(state.products.values(), key=lambda p: p.sensing)
                if p.collection in collections
                and p.footprint.intersects(outline)
                and t0 < p.sensing < t1
                and p.cloud <= float(cloud.group(1))
                and (not ptype or ptype.group(1) == p.product_type)
                and (not contains or contains.group(1) in p.name)
            ]
            page = hits[skip : skip + top]
            if state.endless_pages:  # a page of one result and a next link, forever
                page = hits[:1]
                top = 0
                hits = hits * (skip + 2)
            body: dict = {
                "@odata.context": "$metadata#Products(Attributes())",
                "value": [p.odata() for p in page],
            }
            if skip + top < len(hits) or state.endless_pages:
                nxt = dict(query)
                nxt["$skip"] = [str(skip + max(top, 1))]
                from urllib.parse import urlencode

                body[state.next_link_key] = state.url(
                    "/odata/v1/Products?" + urlencode({k: v[0] for k, v in nxt.items()})
                )
            self._json(200, body)

        # --- download service ---
        def _authorised(self) -> bool:
            value = self.headers.get("Authorization", "")
            token = value.removeprefix("Bearer ")
            return value.startswith("Bearer ") and state.tokens.get(token, 0) > time.time()

        def _redirect(self, product_id: str) -> None:
            if not self._authorised():
                return self._json(401, {"detail": "Expired signature!"})
            product = state.products.get(product_id)
            if product is None:
                return self._json(404, {"detail": "no such product"})
            if state.once(product, "revoke"):
                state.tokens.clear()  # as if every token expired server-side
                return self._json(401, {"detail": "Expired signature!"})
            if state.once(product, "throttle"):
                return self._json(
                    429, {"detail": "Too many requests"}, {"Retry-After": state.retry_after}
                )
            if state.once(product, "unavailable"):
                return self._json(503, {"detail": "busy"}, {"Retry-After": state.retry_after})
            self._record(307)
            self.send_response(307)
            self.send_header(
                "Location",
                state.url(f"/zipper/odata/v1/Products({product_id})/$value", "localhost"),
            )
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _download(self, product_id: str) -> None:
            if not self._authorised():
                return self._json(401, {"detail": "Expired signature!"})
            product = state.products.get(product_id)
            if product is None:
                return self._json(404, {"detail": "no such product"})
            data = product.data
            start = 0
            rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if rng:
                start = int(rng.group(1))
                if start >= len(data):
                    self._record(416)
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            status = 206 if rng else 200
            self._record(status)
            self.send_response(status)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(data) - start))
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            body = data[start:]
            with state.lock:
                state.active += 1
                state.max_active = max(state.max_active, state.active)
            try:
                time.sleep(state.download_delay)
                self._send_body(product, body)
            finally:
                with state.lock:
                    state.active -= 1

        def _send_body(self, product: FakeProduct, body: bytes) -> None:
            if state.trickle_s:  # a byte now and then: each read is on time, the whole never is
                for i in range(len(body)):
                    try:
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                    except OSError:  # the client gave up
                        return
                    time.sleep(state.trickle_s)
                return
            if state.once(product, "cut"):
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def cdse():
    """A running loopback Data Space; ``cdse.port`` is its port."""
    state = FakeCdse()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    """A FIREDpy events GeoPackage with fire 9844 (Flagstaff, May 2020) and fire 77 (Alps)."""
    import geopandas as gpd

    path = tmp_path / "events.gpkg"
    gpd.GeoDataFrame(
        {
            "id": [9844, 77],
            "ig_date": ["2020-05-07", "2020-05-01"],
            "last_date": ["2020-05-20", "2020-05-03"],
        },
        geometry=[FIRE, Polygon([(10.0, 45.0), (10.1, 45.0), (10.1, 45.1), (10.0, 45.1)])],
        crs="EPSG:4326",
    ).to_file(path)
    return path


@pytest.fixture
def cdse_env(monkeypatch, tmp_path):
    """Credentials in the environment, and no stray ~/.netrc."""
    monkeypatch.setenv("CDSE_USERNAME", USERNAME)
    monkeypatch.setenv("CDSE_PASSWORD", PASSWORD)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


class FakeDhus:
    """A loopback DHuS hub: OpenSearch JSON search, OData product entries and downloads."""

    def __init__(self) -> None:
        self.products: dict[str, FakeProduct] = {}
        self.requests: list[Request] = []
        self.queries: list[str] = []
        self.port = 0

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/dhus/{path}"

    def entry(self, product: FakeProduct) -> dict:
        stamp = product.sensing.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return {
            "id": product.id,
            "title": product.name.removesuffix(".SAFE"),
            "link": [{"href": self.url(f"odata/v1/Products('{product.id}')/$value")}],
            "date": [{"name": "beginposition", "content": stamp}],
            "double": {"name": "cloudcoverpercentage", "content": str(product.cloud)},
            "str": [{"name": "producttype", "content": "S2MSI2A"}],
        }

    def odata(self, product: FakeProduct) -> dict:
        millis = int(product.sensing.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)
        return {
            "d": {
                "Id": product.id,
                "Name": product.name.removesuffix(".SAFE"),
                "ContentLength": str(len(product.data)),
                "Checksum": {"Algorithm": "MD5", "Value": product.md5.upper()},
                "ContentDate": {"Start": f"/Date({millis})/", "End": f"/Date({millis})/"},
                "CreationDate": f"/Date({millis})/",
                "IngestionDate": f"/Date({millis})/",
                "ContentGeometry": (
                    '<gml:Polygon xmlns:gml="http://www.opengis.net/gml"><gml:outerBoundaryIs>'
                    "<gml:LinearRing><gml:coordinates>34.8,-112.2 34.8,-110.9 35.8,-110.9 "
                    "34.8,-112.2</gml:coordinates></gml:LinearRing></gml:outerBoundaryIs>"
                    "</gml:Polygon>"
                ),
                "Online": True,
                "Attributes": {"__deferred": {"uri": "Attributes"}},
                "__metadata": {"media_src": self.url(f"odata/v1/Products('{product.id}')/$value")},
            }
        }


def _make_dhus_handler(state: FakeDhus) -> type[BaseHTTPRequestHandler]:
    import base64

    expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
            state.requests.append(
                Request(
                    "GET",
                    self.path,
                    self.headers.get("Host", ""),
                    dict(self.headers),
                    time.time(),
                    status,
                )
            )
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.headers.get("Authorization") != expected:
                return self._send(
                    401, b'{"error": {"message": {"value": "Unauthorized"}}}', "application/json"
                )
            parsed = urlparse(self.path)
            if parsed.path == "/dhus/search":
                query = parse_qs(parsed.query)
                state.queries.append(query["q"][0])
                entries = [state.entry(p) for p in state.products.values()]
                feed = {"feed": {"opensearch:totalResults": str(len(entries)), "entry": entries}}
                return self._send(200, json.dumps(feed).encode(), "application/json")
            match = re.fullmatch(r"/dhus/odata/v1/Products\('(.+)'\)(/\$value)?", parsed.path)
            if not match or match.group(1) not in state.products:
                return self._send(404, b"{}", "application/json")
            product = state.products[match.group(1)]
            if not match.group(2):
                return self._send(
                    200, json.dumps(state.odata(product)).encode(), "application/json"
                )
            rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            start = int(rng.group(1)) if rng else 0
            headers = (
                {"Content-Range": f"bytes {start}-{len(product.data) - 1}/{len(product.data)}"}
                if rng
                else {}
            )
            self._send(
                206 if rng else 200, product.data[start:], "application/octet-stream", headers
            )

    return Handler


@pytest.fixture
def dhus():
    """A running loopback DHuS hub."""
    state = FakeDhus()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_dhus_handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
