"""A STAC API and a file server with HTTP Range support on 127.0.0.1, for the STAC provider.

The API speaks the subset the provider uses, shaped after Planetary Computer's and Earth
Search's: a landing page with ``conformsTo`` and ``search`` links, ``/conformance``, and
``/search`` by GET and POST with ``collections``, ``intersects``, ``datetime``, ``limit`` and
``query`` (``eo:cloud_cover``), paged by ``next`` links (a token; POST next links carry the body).
Items are STAC 1.0 Features whose assets point at the file server, which answers ``Range``
requests with 206 and counts the bytes it sends per file.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import shapely
from shapely.geometry import mapping, shape

CONFORMS = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
]


@dataclass
class StacState:
    items: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    bytes_sent: dict[str, int] = field(default_factory=dict)
    searches: list[str] = field(default_factory=list)  # "GET" / "POST" per /search request
    post_search: bool = True  # False: POST /search answers 405 (a GET-only API)
    query_extension: bool = True  # False: a search with ``query`` answers 400
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve_file(self, name: str, path: Path) -> str:
        self.files[name] = path
        return f"{self.root}/files/{name}"

    def add_item(self, item: dict[str, Any]) -> dict[str, Any]:
        self.items.append(item)
        return item


def _matches(item: dict[str, Any], params: dict[str, Any]) -> bool:
    collections = params.get("collections") or []
    if collections and item["collection"] not in collections:
        return False
    if params.get("intersects") and not shape(item["geometry"]).intersects(
        shape(params["intersects"])
    ):
        return False
    if params.get("datetime"):
        start, _, end = str(params["datetime"]).partition("/")
        when = item["properties"]["datetime"]
        if (start not in ("", "..") and when < start) or (end not in ("", "..") and when > end):
            return False
    cloud = ((params.get("query") or {}).get("eo:cloud_cover") or {}).get("lte")
    return not (cloud is not None and item["properties"].get("eo:cloud_cover", 0) > cloud)


def _handler(state: StacState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/geo+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _landing(self) -> None:
            root = state.root
            self._json(
                200,
                {
                    "type": "Catalog", "id": "loopback-stac", "stac_version": "1.0.0",
                    "description": "test STAC API", "conformsTo": CONFORMS,
                    "links": [
                        {"rel": "self", "href": f"{root}/", "type": "application/json"},
                        {"rel": "root", "href": f"{root}/", "type": "application/json"},
                        {"rel": "conformance", "href": f"{root}/conformance"},
                        {"rel": "search", "href": f"{root}/search", "method": "GET",
                         "type": "application/geo+json"},
                        {"rel": "search", "href": f"{root}/search", "method": "POST",
                         "type": "application/geo+json"},
                    ],
                },
            )  # fmt: skip

        def _search(self, params: dict[str, Any], method: str) -> None:
            with state.lock:
                state.searches.append(method)
            if method == "POST" and not state.post_search:
                return self._json(405, {"code": "MethodNotAllowed", "description": "GET only"})
            if params.get("query") and not state.query_extension:
                return self._json(400, {"code": "BadRequest", "description": "unknown: query"})
            hits = [i for i in state.items if _matches(i, params)]
            hits.sort(key=lambda i: i["properties"]["datetime"])
            limit = int(params.get("limit") or 10)
            start = int(params.get("token") or 0)
            page = hits[start : start + limit]
            links: list[dict[str, Any]] = [{"rel": "root", "href": f"{state.root}/"}]
            if start + limit < len(hits):
                if method == "POST":
                    body = {**params, "token": str(start + limit)}
                    links.append({"rel": "next", "href": f"{state.root}/search",
                                  "method": "POST", "body": body, "merge": False})  # fmt: skip
                else:
                    query = {k: v for k, v in self._raw_query.items()}
                    query["token"] = [str(start + limit)]
                    qs = "&".join(f"{k}={v[0]}" for k, v in query.items())
                    links.append({"rel": "next", "href": f"{state.root}/search?{qs}",
                                  "method": "GET"})  # fmt: skip
            self._json(200, {"type": "FeatureCollection", "features": page, "links": links,
                             "numberReturned": len(page)})  # fmt: skip

        def _file(self, name: str) -> None:
            path = state.files.get(name)
            if path is None:
                return self._json(404, {"code": "NotFound"})
            data = path.read_bytes()
            rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if self.command == "HEAD":
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                return
            if rng:
                a = int(rng.group(1))
                b = int(rng.group(2)) if rng.group(2) else len(data) - 1
                b = min(b, len(data) - 1)
                body = data[a : b + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {a}-{b}/{len(data)}")
            else:
                body = data
                self.send_response(200)
            self.send_header("Content-Type", "image/tiff")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            with state.lock:
                state.bytes_sent[name] = state.bytes_sent.get(name, 0) + len(body)

        def do_HEAD(self) -> None:
            parsed = urlparse(self.path)
            if parsed.path.startswith("/files/"):
                return self._file(parsed.path.removeprefix("/files/"))
            self._json(404, {})

        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            if parsed.path in ("", "/"):
                return self._landing()
            if parsed.path == "/conformance":
                return self._json(200, {"conformsTo": CONFORMS})
            if parsed.path.startswith("/sas/token/"):  # Planetary Computer's SAS token API
                with state.lock:
                    state.searches.append("SAS")
                return self._json(200, {"msft:expiry": "2099-01-01T00:00:00Z",
                                        "token": "st=2020&se=2099&sp=rl&sig=loopback"})  # fmt: skip
            if parsed.path.startswith("/files/"):
                return self._file(parsed.path.removeprefix("/files/"))
            if parsed.path == "/search":
                self._raw_query = parse_qs(parsed.query)
                q = {k: v[0] for k, v in self._raw_query.items()}
                params: dict[str, Any] = {
                    "collections": q["collections"].split(",") if q.get("collections") else [],
                    "intersects": json.loads(q["intersects"]) if q.get("intersects") else None,
                    "datetime": q.get("datetime"),
                    "limit": q.get("limit"),
                    "token": q.get("token"),
                    "query": json.loads(q["query"]) if q.get("query") else None,
                }
                return self._search(params, "GET")
            self._json(404, {"code": "NotFound"})

        def do_POST(self) -> None:
            if urlparse(self.path).path != "/search":
                return self._json(404, {"code": "NotFound"})
            size = int(self.headers.get("Content-Length", "0"))
            params = json.loads(self.rfile.read(size) or b"{}")
            self._search(params, "POST")

    return Handler


def start(state: StacState) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()  # fmt: skip
    return server


def footprint(bounds_4326: tuple[float, float, float, float]) -> dict[str, Any]:
    return mapping(shapely.box(*bounds_4326))
