"""The download stage against a loopback Data Space, with injected faults."""

from __future__ import annotations

import json
import socket

import pytest
from hydra import compose, initialize_config_dir

from firedpy_nrt.config import validate
from firedpy_nrt.config.prepare import PrepareConfig
from firedpy_nrt.errors import ConfigError, CredentialsError, DownloadError
from firedpy_nrt.prepare.download import run_stage
from firedpy_nrt.prepare.download.manifest import read_manifest

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]

from download_support import CONF, leftovers, make_cfg, run, scenes  # noqa: E402


def test_sentinel_archives_are_fetched_over_pages_and_extracted(
    cdse, tmp_path, events_file, cdse_env
):
    s_pre1 = cdse.sentinel("a1", "20200412")
    s_pre2 = cdse.sentinel("a2", "20200427")
    s_post = cdse.sentinel("a3", "20200606")
    cdse.sentinel("cloudy", "20200502", cloud=80.0)
    cdse.sentinel("late", "20200801")  # outside the window
    result = run(cdse, tmp_path, events_file, ("event_ids=[9844]",), page_size=2)
    assert result.failed == [] and result.written == 3 and result.skipped == 0

    root = scenes(tmp_path)
    for product in (s_pre1, s_pre2, s_post):
        safe = root / "sentinel" / product.name
        assert (safe / "manifest.safe").is_file()
        assert len(list(safe.rglob("*_B12_20m.jp2"))) == 1
    assert not (
        root / "sentinel" / "S2A_MSIL2A_20200502T180911_N0500_R041_T12SVC_20200502T215853.SAFE"
    ).exists()
    assert leftovers(root) == []

    entries = read_manifest(root)
    assert {e["id"] for e in entries} == {"a1", "a2", "a3"}
    entry = next(e for e in entries if e["id"] == "a1")
    assert entry["status"] == "complete"
    assert entry["checksum"] == {"algorithm": "MD5", "value": s_pre1.md5}
    assert entry["size"] == len(s_pre1.data)
    assert entry["sensing_time"].startswith("2020-04-12T18:09:11")
    assert entry["path"] == f"sentinel/{s_pre1.name}"

    searches = [r for r in cdse.requests if r.path.startswith("/odata/v1/Products")]
    assert len(searches) == 2  # 2 pages of 2 (3 hits)
    assert all("Authorization" not in r.headers for r in searches)
    # The download service redirects to another host; the trusted one still gets the token.
    zipper = [r for r in cdse.requests if r.path.startswith("/zipper/")]
    assert zipper and all(r.headers.get("Authorization", "").startswith("Bearer ") for r in zipper)
    assert all(r.host.startswith("localhost") for r in zipper)
    assert cdse.grants == ["password"]


def test_uppercase_next_link_is_followed(cdse, tmp_path, events_file, cdse_env):
    cdse.next_link_key = "@OData.nextLink"
    for i, day in enumerate(("20200410", "20200415", "20200420")):
        cdse.sentinel(f"p{i}", day)
    result = run(cdse, tmp_path, events_file, page_size=1)
    assert result.written == 3 and result.failed == []


def test_connection_cut_mid_download_resumes_with_range(cdse, tmp_path, events_file, cdse_env):
    product = cdse.sentinel("cut", "20200412", faults={"cut"})
    result = run(cdse, tmp_path, events_file)
    assert result.failed == [] and result.written == 1
    gets = [r for r in cdse.requests if r.path.startswith("/zipper/")]
    assert len(gets) == 2
    assert "Range" not in gets[0].headers
    offset = int(gets[1].headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < offset < len(product.data)
    assert gets[1].status == 206
    assert (scenes(tmp_path) / "sentinel" / product.name / "manifest.safe").is_file()


@pytest.mark.parametrize("fault,status", [("throttle", 429), ("unavailable", 503)])
def test_retry_after_is_honoured(cdse, tmp_path, events_file, cdse_env, fault, status):
    cdse.sentinel("busy", "20200412", faults={fault})
    result = run(cdse, tmp_path, events_file)
    assert result.failed == []
    hits = [r for r in cdse.downloads_of("busy") if r.path.startswith("/download/")]
    assert [r.status for r in hits] == [status, 307]
    # Backoff alone would wait 0.01 s; the server asked for 0.3 s.
    assert hits[1].time - hits[0].time >= 0.29


def test_search_429_is_retried_after_the_asked_delay(cdse, tmp_path, events_file, cdse_env):
    cdse.sentinel("a", "20200412")
    cdse.throttle_search = 1
    result = run(cdse, tmp_path, events_file)
    assert result.written == 1
    searches = [r for r in cdse.requests if r.path.startswith("/odata/v1/Products")]
    assert [r.status for r in searches] == [429, 200]
    assert searches[1].time - searches[0].time >= 0.29


def test_catalogue_size_that_differs_from_the_file_still_verifies(
    cdse, tmp_path, events_file, cdse_env
):
    product = cdse.sentinel("odd", "20200412", faults={"wrong_size"})
    result = run(cdse, tmp_path, events_file)
    assert (result.written, result.failed) == (1, [])
    assert (scenes(tmp_path) / "sentinel" / product.name / "manifest.safe").is_file()


def test_expired_token_is_refreshed_and_the_download_retried(cdse, tmp_path, events_file, cdse_env):
    cdse.sentinel("x", "20200412", faults={"revoke"})
    result = run(cdse, tmp_path, events_file)
    assert result.failed == [] and result.written == 1
    assert cdse.grants == ["password", "refresh_token"]
    statuses = [r.status for r in cdse.downloads_of("x")]
    assert statuses[0] == 401 and statuses[-1] == 200


def test_wrong_checksum_is_deleted_retried_and_reported(cdse, tmp_path, events_file, cdse_env):
    good = cdse.sentinel("good", "20200412")
    bad = cdse.sentinel("bad", "20200427", faults={"bad_md5"})
    result = run(cdse, tmp_path, events_file)
    assert result.written == 1
    assert len(result.failed) == 1 and bad.name in result.failed[0]
    assert "checksum mismatch" in result.failed[0] and "\n" not in result.failed[0]
    # retries=2: three full transfers, each deleted after its check
    assert len([r for r in cdse.downloads_of("bad") if r.path.startswith("/zipper/")]) == 3
    root = scenes(tmp_path)
    assert not (root / "sentinel" / bad.name).exists()
    assert (root / "sentinel" / good.name).is_dir()
    assert leftovers(root) == []
    entry = next(e for e in read_manifest(root) if e["id"] == "bad")
    assert entry["status"] == "failed" and "checksum mismatch" in entry["error"]


def test_archive_member_escaping_the_folder_is_refused(cdse, tmp_path, events_file, cdse_env):
    name = "S2A_MSIL2A_20200412T180911_N0500_R041_T12SVC_20200412T215853.SAFE"
    evil = cdse.sentinel(
        "evil", "20200412", data=cdse.safe_zip(name, extra={"../../evil.txt": b"x"})
    )
    result = run(cdse, tmp_path, events_file)
    assert len(result.failed) == 1 and "refused member '../../evil.txt'" in result.failed[0]
    assert not list(tmp_path.rglob("evil.txt"))
    root = scenes(tmp_path)
    assert not (root / "sentinel" / evil.name).exists()
    assert leftovers(root) == []


def test_an_empty_search_is_named_and_sets_the_exit_code(cdse, tmp_path, events_file, cdse_env):
    cdse.sentinel("a", "20200412")  # covers fire 9844 only
    result = run(cdse, tmp_path, events_file, ("event_ids=[77]",))
    (failure,) = result.failed  # the exit code says so; download.empty_ok=true accepts it
    assert "fire 77 sentinel: no products from cdse between 2020-04-01 and 2020-06-02" in failure
    assert "download.empty_ok=true" in failure and (result.written, result.skipped) == (0, 0)
    result = run(cdse, tmp_path, events_file, ("event_ids=[77]",), empty_ok=True)
    assert (result.written, result.skipped, result.failed) == (0, 0, [])
    manifest = tmp_path / "data" / "scenes" / "77" / "manifest.json"
    assert json.loads(manifest.read_text())["products"] == []
    assert not [r for r in cdse.requests if "$value" in r.path]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_is_one_line_naming_the_url(cdse, tmp_path, events_file, cdse_env):
    url = f"http://127.0.0.1:{_closed_port()}/odata/v1"
    cfg = make_cfg(cdse, tmp_path, events_file, ("event_ids=[9844]",))
    cfg.download.cdse.catalogue_url = url
    with pytest.raises(DownloadError) as info:
        run_stage(cfg)
    message = str(info.value)
    assert "\n" not in message and f"{url}/Products" in message and "cannot reach" in message
    assert cdse.password not in message and cdse.username not in message


def test_rerun_skips_complete_and_resumes_partial(cdse, tmp_path, events_file, cdse_env):
    done = cdse.sentinel("done", "20200412")
    assert run(cdse, tmp_path, events_file).written == 1
    before = len(cdse.requests)
    partial = cdse.sentinel("partial", "20200427")
    folder = scenes(tmp_path) / "sentinel"
    half = len(partial.data) // 3
    (folder / f"{partial.name.removesuffix('.SAFE')}.zip.part").write_bytes(partial.data[:half])
    result = run(cdse, tmp_path, events_file)
    assert (result.written, result.skipped, result.failed) == (1, 1, [])
    new = cdse.requests[before:]
    assert not [r for r in new if f"({done.id})" in r.path]
    (get,) = [r for r in new if r.path.startswith("/zipper/")]
    assert get.headers["Range"] == f"bytes={half}-"
    assert (folder / partial.name / "manifest.safe").is_file()
    assert leftovers(scenes(tmp_path)) == []


def test_folder_without_manifest_is_adopted(cdse, tmp_path, events_file, cdse_env):
    cdse.sentinel("p", "20200412")
    run(cdse, tmp_path, events_file)
    (scenes(tmp_path) / "manifest.json").unlink()
    before = len(cdse.requests)
    result = run(cdse, tmp_path, events_file)
    assert (result.written, result.skipped) == (0, 1)
    assert not [r for r in cdse.requests[before:] if "$value" in r.path]
    assert [e["status"] for e in read_manifest(scenes(tmp_path))] == ["complete"]


def test_overwrite_fetches_again(cdse, tmp_path, events_file, cdse_env):
    product = cdse.sentinel("p", "20200412")
    run(cdse, tmp_path, events_file)
    marker = scenes(tmp_path) / "sentinel" / product.name / "stale.txt"
    marker.write_text("from an old run")
    result = run(cdse, tmp_path, events_file, ("event_ids=[9844]", "overwrite=true"))
    assert result.written == 1 and not marker.exists()
    assert (scenes(tmp_path) / "sentinel" / product.name / "manifest.safe").is_file()


def test_keep_archives_puts_them_apart(cdse, tmp_path, events_file, cdse_env):
    s2 = cdse.sentinel("s", "20200412")
    run(cdse, tmp_path, events_file, ("event_ids=[9844]",), keep_archives=True)
    root = scenes(tmp_path)
    assert sorted(p.name for p in (root / "sentinel").iterdir()) == [s2.name]
    stem = s2.name.removesuffix(".SAFE")
    assert (root / "archives" / "sentinel" / f"{stem}.zip").read_bytes() == s2.data


def test_at_most_workers_downloads_at_once(cdse, tmp_path, events_file, cdse_env):
    for i in range(6):
        cdse.sentinel(f"w{i}", f"202004{10 + i:02d}")
    cdse.download_delay = 0.15
    result = run(cdse, tmp_path, events_file, workers=2, progress=True)  # bars on, one per worker
    assert result.written == 6
    assert cdse.max_active == 2


def test_token_not_sent_to_an_untrusted_redirect(cdse, tmp_path, events_file, cdse_env):
    product = cdse.sentinel("p", "20200412")
    result = run(cdse, tmp_path, events_file, cdse={**cdse.config()["cdse"], "trusted_hosts": []})
    assert len(result.failed) == 1 and product.name in result.failed[0]
    zipper = [r for r in cdse.requests if r.path.startswith("/zipper/")]
    assert zipper and all("Authorization" not in r.headers for r in zipper)


def test_missing_credentials_say_how_to_set_them(cdse, tmp_path, events_file, monkeypatch):
    monkeypatch.delenv("CDSE_USERNAME", raising=False)
    monkeypatch.delenv("CDSE_PASSWORD", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "absent"))
    with pytest.raises(CredentialsError, match="set CDSE_USERNAME and CDSE_PASSWORD") as info:
        run(cdse, tmp_path, events_file)
    assert "\n" not in str(info.value)


def test_credentials_from_netrc(cdse, tmp_path, events_file, monkeypatch):
    monkeypatch.delenv("CDSE_USERNAME", raising=False)
    monkeypatch.delenv("CDSE_PASSWORD", raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text(
        f"machine identity.dataspace.copernicus.eu login {cdse.username} password {cdse.password}\n"
    )
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    cdse.sentinel("p", "20200412")
    assert run(cdse, tmp_path, events_file).written == 1


def test_wrong_password_is_a_credentials_error_without_the_password(
    cdse, tmp_path, events_file, monkeypatch
):
    monkeypatch.setenv("CDSE_USERNAME", cdse.username)
    monkeypatch.setenv("CDSE_PASSWORD", "not-the-password-1234")
    monkeypatch.setenv("NETRC", str(tmp_path / "absent"))
    cdse.sentinel("p", "20200412")
    result = run(cdse, tmp_path, events_file)
    assert len(result.failed) == 1 and "refused the username/password" in result.failed[0]
    assert "not-the-password-1234" not in result.failed[0]


@pytest.mark.parametrize(
    "override,key",
    [
        ("download.workers=0", "download.workers"),
        ("download.cloud_cover=120", "download.cloud_cover"),
        ("download.cdse.token_url=ftp://x", "download.cdse.token_url"),
        ("+download.wrkers=3", "download.wrkers"),
        ("download.sentinel_provider=usgs", "download.sentinel_provider"),
    ],
)
def test_bad_download_keys_are_one_line_config_errors(tmp_path, override, key):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("prepare", overrides=[override, f"paths.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        validate(cfg, PrepareConfig)


def test_landsat_through_the_data_space_is_refused_in_one_line(cdse, tmp_path, events_file):
    """Its LANDSAT-8/9 collections are Level-1 (a search for L2 found nothing, exit 0); Level-2
    is LANDSAT-8-ESA, over Europe only."""
    with pytest.raises(ConfigError, match="config key 'download.landsat_provider': the Data "
                       "Space has no Landsat Level-2 .*download=planetary_computer"):  # fmt: skip
        make_cfg(cdse, tmp_path, events_file, ("satellite=landsat",), landsat_provider="cdse")


def test_dhus_has_no_default_hub(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("prepare", overrides=["download=dhus", f"paths.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"config key 'download.dhus.api_url': must be set"):
        validate(cfg, PrepareConfig)
