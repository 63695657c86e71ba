"""Servers that lie or stall: endless next links, trickling bodies, names that are paths,
fields that are not what the API says. Each is one line naming the server or product, and
nothing is written outside paths.data_dir."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from download_support import make_cfg, run, scenes

from firedpy_nrt.errors import DownloadError
from firedpy_nrt.prepare.download import run_stage
from firedpy_nrt.prepare.download.product import Product, safe_name

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_endless_next_links_stop_at_max_pages_naming_the_server(
    cdse, tmp_path, events_file, cdse_env
):
    cdse.sentinel("a", "20200501")
    cdse.endless_pages = True
    start = time.monotonic()
    with pytest.raises(DownloadError) as exc:
        run(cdse, tmp_path, events_file, max_pages=25)
    message = str(exc.value)
    assert "\n" not in message and "download.max_pages=25" in message
    assert cdse.url("/odata/v1") in message
    searches = [r for r in cdse.requests if r.path.startswith("/odata/v1/Products")]
    assert len(searches) == 25
    assert time.monotonic() - start < 30


def test_a_trickling_server_is_cut_off_by_the_minimum_rate(cdse, tmp_path, events_file, cdse_env):
    product = cdse.sentinel("a", "20200501")
    cdse.trickle_s = 0.02  # 50 bytes/s: each read arrives in time, the whole would take an hour
    start = time.monotonic()
    result = run(cdse, tmp_path, events_file, min_rate_kbps=1.0, min_rate_grace_s=0.5, retries=1)
    elapsed = time.monotonic() - start
    assert len(result.failed) == 1 and "too slow" in result.failed[0]
    assert "download.min_rate_kbps=1" in result.failed[0] and "\n" not in result.failed[0]
    assert elapsed < 20 and len(product.data) > 20_000
    assert not (scenes(tmp_path) / "sentinel" / f"{product.name}.SAFE").exists()


@pytest.mark.parametrize(
    "name",
    ["../../../../X", "/tmp/firedpy-evil", "..", ".hidden", "a/b", "a\\b", "x\x00y", ""],
)
def test_server_names_that_are_paths_are_refused(name):
    with pytest.raises(DownloadError, match="not a plain file name"):
        safe_name(name)
    with pytest.raises(DownloadError):
        Product("sentinel", "cdse", "1", name, dt.datetime(2020, 5, 1), "http://x")


@pytest.mark.parametrize("name", ["../../../../X", "/tmp/firedpy-absolute-{port}"])
def test_traversal_and_absolute_names_write_and_delete_nothing_outside(
    cdse, tmp_path, events_file, cdse_env, name
):
    name = name.format(port=cdse.port)
    victim = Path(name) if name.startswith("/") else None
    if victim is not None:
        victim.mkdir(exist_ok=True)
        (victim / "keep.txt").write_text("mine")
    try:
        product = cdse.sentinel("a", "20200501")
        product.name = name
        before = _files(tmp_path)
        with pytest.raises(DownloadError, match="not a plain file name") as exc:
            run(cdse, tmp_path, events_file, overrides=("event_ids=[9844]", "overwrite=true"))
        assert "\n" not in str(exc.value) and cdse.url("/odata/v1") in str(exc.value)
        created = _files(tmp_path) - before
        data = tmp_path / "data"
        assert all(str(tmp_path / c).startswith(str(data)) for c in created), created
        assert not (tmp_path.parent / "X").exists() and not (tmp_path / "X").exists()
        assert not any(r.path.startswith("/zipper") for r in cdse.requests)  # nothing fetched
        if victim is not None:
            assert (victim / "keep.txt").read_text() == "mine"
    finally:
        if victim is not None:
            import shutil

            shutil.rmtree(victim, ignore_errors=True)


@pytest.mark.parametrize(
    ("fault", "what"),
    [("bad_date", "unparsable ContentDate"), ("checksum_not_object", "Checksum that is not")],
)
def test_malformed_search_results_are_one_line_naming_the_product_and_server(
    cdse, tmp_path, events_file, cdse_env, fault, what
):
    product = cdse.sentinel("a", "20200501", faults={fault})
    with pytest.raises(DownloadError) as exc:
        run(cdse, tmp_path, events_file)
    message = str(exc.value)
    assert "\n" not in message and what in message
    assert product.name in message and cdse.url("/odata/v1") in message


def test_a_token_answer_with_a_non_numeric_lifetime_is_one_line(
    cdse, tmp_path, events_file, cdse_env, monkeypatch
):
    import json

    import firedpy_nrt.prepare.download.cdse as cdse_module

    cdse.sentinel("a", "20200501")
    real = cdse_module.send

    def lying(session, method, url, *args, **kwargs):
        response = real(session, method, url, *args, **kwargs)
        if "openid-connect/token" in url and response.status_code == 200:
            body = response.json()
            body["refresh_token"] = "r-1"
            body["refresh_expires_in"] = "soon"
            response._content = json.dumps(body).encode()
        return response

    monkeypatch.setattr(cdse_module, "send", lying)
    result = run_stage(make_cfg(cdse, tmp_path, events_file, ("event_ids=[9844]",)))
    (failure,) = result.failed  # the product fails (exit code 1), with one line naming the server
    assert "refresh_expires_in that is not a number" in failure and "\n" not in failure
    assert cdse.url("/auth/realms/CDSE/protocol/openid-connect/token") in failure
