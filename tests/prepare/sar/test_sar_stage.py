"""The SAR stage end to end against stand-ins of Earthdata Login, CMR, the data pool and HyP3."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hydra import compose, initialize_config_dir

from firedpy_nrt.config import validate
from firedpy_nrt.config.prepare import PrepareConfig
from firedpy_nrt.data.layers import DEFAULT_PATTERNS
from firedpy_nrt.errors import CredentialsError
from firedpy_nrt.prepare.sar import run_stage

from .sar_scene import BURSTS, D0, D1, D2, EVENT_BOX, RES, X0, Y0, SarScene, write_events
from .sar_server import SarServer

CONF = Path(__file__).resolve().parents[3] / "conf"


@pytest.fixture
def server():
    with SarServer() as state:
        scene = SarScene()
        scene.build(state)
        state.scene = scene
        yield state


@pytest.fixture
def login(monkeypatch, tmp_path, server):
    """Username and password in the environment; no netrc and no token."""
    monkeypatch.delenv("EARTHDATA_TOKEN", raising=False)
    monkeypatch.setenv("EARTHDATA_USERNAME", server.username)
    monkeypatch.setenv("EARTHDATA_PASSWORD", server.password)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def make_cfg(server, tmp_path, *overrides):
    events = write_events(tmp_path / "events.geojson")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "prepare",
            overrides=[
                "stages=[sar]",
                f"events={events}",
                f"paths.data_dir={tmp_path / 'data'}",
                f"paths.log_dir={tmp_path / 'logs'}",
                f"paths.output_dir={tmp_path / 'out'}",
                f"sar.search_url={server.root}/cmr",
                f"sar.edl_url={server.root}/edl",
                f"sar.hyp3_url={server.root}/hyp3",
                "sar.hyp3_poll_s=0.02",
                "sar.hyp3_timeout_s=30",
                "sar.buffer_m=60",
                "download.progress=false",
                "download.retries=1",
                "download.backoff_s=0",
                *overrides,
            ],
        )
    return validate(cfg, PrepareConfig)


def outputs(tmp_path) -> dict[str, Path]:
    sar = tmp_path / "data" / "sar"
    return {
        "lum": sar / "lum_change" / f"3129_{D1:%Y%m%d}_{D2:%Y%m%d}_DeltaLumin_30m.tif",
        "coh": sar / "coh_change" / f"3129_{D0:%Y%m%d}_{D1:%Y%m%d}_{D2:%Y%m%d}_cohChange.tif",
        "label": sar / "binary_product" / f"3129_FIREDpy_sar_combined_{D1:%Y%m%d}_{D2:%Y%m%d}.tif",
    }


def _read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.transform, src.crs


def test_layers_track_dates_values_and_credentials(server, login, tmp_path, caplog):
    caplog.set_level("DEBUG")
    result = run_stage(make_cfg(server, tmp_path, "sar.page_size=7"))
    assert result.failed == []
    out = outputs(tmp_path)
    assert out["lum"].is_file() and out["coh"].is_file()
    # The names are the data contract's, so the match stage reads them unchanged.
    assert re.fullmatch(DEFAULT_PATTERNS["lum_change"], out["lum"].name)
    assert re.fullmatch(DEFAULT_PATTERNS["coh_change"], out["coh"].name)

    # Luminance change: on the RTC lattice, covering the event, two bursts mosaicked, the newest
    # production of the reprocessed burst, against 10*log10(post/pre) of the truth.
    lum, transform, crs = _read(out["lum"])
    assert crs.to_epsg() == 32611 and transform.a == RES
    assert ((transform.c - X0) / RES) % 1 == 0 and ((Y0 - transform.f) / RES) % 1 == 0
    left, top = transform.c, transform.f
    assert left <= EVENT_BOX[0] and top >= EVENT_BOX[3]
    assert left + lum.shape[1] * RES >= EVENT_BOX[2] and top - lum.shape[0] * RES <= EVENT_BOX[1]
    expected = server.scene.expected_lum(transform, lum.shape)
    assert np.array_equal(np.isnan(lum), np.isnan(expected))
    np.testing.assert_allclose(lum[~np.isnan(lum)], expected[~np.isnan(expected)], atol=1e-4)
    # The pixels of both bursts are there (the overlap and both ends of the event).
    cols = (np.arange(lum.shape[1]) * RES + left - X0) // RES
    assert cols.min() < BURSTS["T071-151231-IW2"][0] and cols.max() >= BURSTS["T071-151230-IW1"][1]
    assert np.isfinite(lum).all()
    burned = lum < -1.5
    assert 0.1 < burned.mean() < 0.6

    # Coherence change: pre_minus_co on the (d1, d2) product's lattice.
    coh, ctransform, ccrs = _read(out["coh"])
    assert ccrs.to_epsg() == 32611 and ctransform.a == 80.0
    expected = server.scene.expected_coh(ctransform, coh.shape)
    assert np.array_equal(np.isnan(coh), np.isnan(expected))
    np.testing.assert_allclose(coh[~np.isnan(coh)], expected[~np.isnan(expected)], atol=1e-5)
    assert np.nanmax(coh) > 0.4  # rises over the burn

    # Jobs: the two pairs, submitted together in one request, with the configured looks.
    posts = server.paths("/hyp3/jobs", "POST")
    assert len(posts) == 1
    pairs = sorted(sorted(j["job_parameters"]["granules"]) for j in server.jobs.values())
    assert len(pairs) == 2
    assert all(j["job_parameters"]["looks"] == "20x4" for j in server.jobs.values())
    assert {j["name"] for j in server.jobs.values()} == {
        f"firedpy-3129-{D0:%Y%m%d}-{D1:%Y%m%d}",
        f"firedpy-3129-{D1:%Y%m%d}-{D2:%Y%m%d}",
    }
    # Nothing of the decoy track or the older production was read.
    datapool = [r.path for r in server.paths("/datapool/")]
    assert datapool and not any("T144" in p for p in datapool)
    assert not any("T071-151230-IW1" in p and "Z_20210708T1855" in p for p in datapool)

    # Credentials: the password only to Earthdata Login; the token only to the data pool and
    # HyP3, never to the pre-signed host or the public product URLs.
    basic = [r for r in server.requests if r.headers.get("Authorization", "").startswith("Basic")]
    assert basic and all(r.path.startswith("/edl/") for r in basic)
    for r in server.requests:
        auth = r.headers.get("Authorization", "")
        if r.host.startswith("localhost") or r.path.startswith("/products/"):
            assert not auth, r.path
        if r.path.startswith(("/datapool/", "/hyp3/")):
            assert auth == f"Bearer {server.token}"
    assert server.paths("/s3/")  # the redirect was followed
    assert not list((tmp_path / "data").rglob("*.zip"))  # products not kept by default
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert server.token.encode() not in data and server.password.encode() not in data
    assert server.token not in caplog.text and server.password not in caplog.text


def test_rerun_submits_and_downloads_nothing(server, login, tmp_path):
    cfg = make_cfg(server, tmp_path, "sar.label=perimeter")
    assert run_stage(cfg).failed == []
    before = {p: p.stat().st_mtime_ns for p in outputs(tmp_path).values()}
    seen = len(server.requests)
    again = run_stage(cfg)
    assert again.failed == [] and again.written == 0 and again.skipped == 3
    new = server.requests[seen:]
    assert new and all(r.path.startswith("/cmr/") for r in new)  # searched, nothing else
    assert {p: p.stat().st_mtime_ns for p in outputs(tmp_path).values()} == before


def test_timeout_names_the_jobs_then_a_rerun_reuses_them(server, login, tmp_path):
    server.steps = 10_000  # the jobs never finish in this run
    cfg = make_cfg(server, tmp_path, "sar.hyp3_timeout_s=0.3")
    result = run_stage(cfg)
    assert len(result.failed) == 1
    message = result.failed[0]
    assert f"firedpy-3129-{D0:%Y%m%d}-{D1:%Y%m%d}" in message
    assert f"firedpy-3129-{D1:%Y%m%d}-{D2:%Y%m%d}" in message and "hyp3_timeout_s" in message
    out = outputs(tmp_path)
    assert out["lum"].is_file() and not out["coh"].exists()
    assert len(server.jobs) == 2

    server.steps = 1
    again = run_stage(cfg)
    assert again.failed == []
    assert len(server.paths("/hyp3/jobs", "POST")) == 1  # found by name, not paid again
    assert len(server.jobs) == 2
    assert out["coh"].is_file()


def test_failed_jobs_are_reported_and_submitted_again(server, login, tmp_path):
    server.fail_jobs = True
    cfg = make_cfg(server, tmp_path)
    result = run_stage(cfg)
    assert len(result.failed) == 1 and "failed" in result.failed[0]
    server.fail_jobs = False
    assert run_stage(cfg).failed == []
    assert len(server.jobs) == 4  # the failed ones were not reused
    assert outputs(tmp_path)["coh"].is_file()


def test_token_from_environment_and_direct_datapool(server, monkeypatch, tmp_path):
    monkeypatch.setenv("EARTHDATA_TOKEN", server.token)
    monkeypatch.delenv("EARTHDATA_USERNAME", raising=False)
    monkeypatch.delenv("EARTHDATA_PASSWORD", raising=False)
    server.datapool = "direct"
    assert run_stage(make_cfg(server, tmp_path)).failed == []
    assert not server.paths("/edl/") and not server.paths("/s3/")
    assert outputs(tmp_path)["lum"].is_file()


def test_missing_credentials_is_one_line(server, monkeypatch, tmp_path):
    for key in ("EARTHDATA_TOKEN", "EARTHDATA_USERNAME", "EARTHDATA_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with pytest.raises(CredentialsError) as info:
        run_stage(make_cfg(server, tmp_path))
    message = str(info.value)
    assert "\n" not in message
    assert "EARTHDATA_TOKEN" in message and "EARTHDATA_USERNAME" in message
    assert ".netrc" in message
    assert not server.paths("/datapool/") and not server.paths("/hyp3/")


def test_wrong_password_is_one_line_without_it(server, monkeypatch, tmp_path):
    monkeypatch.delenv("EARTHDATA_TOKEN", raising=False)
    monkeypatch.setenv("EARTHDATA_USERNAME", server.username)
    monkeypatch.setenv("EARTHDATA_PASSWORD", "wrong-password-123")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with pytest.raises(CredentialsError) as info:
        run_stage(make_cfg(server, tmp_path))
    assert "refused" in str(info.value) and "wrong-password-123" not in str(info.value)


def test_threshold_label(server, login, tmp_path):
    assert run_stage(make_cfg(server, tmp_path, "sar.label=threshold")).failed == []
    label, transform, _ = _read(outputs(tmp_path)["label"])
    lum, _, _ = _read(outputs(tmp_path)["lum"])
    assert set(np.unique(label)) <= {0, 1, 255}
    expected_burn = server.scene.expected_lum(transform, label.shape) < -1.5
    burned = label == 1
    assert burned.any()
    # The combined rule maps the disc: most mapped pixels are in it, most of it is mapped.
    assert (burned & expected_burn).sum() / burned.sum() > 0.9
    assert (burned & expected_burn).sum() / expected_burn.sum() > 0.5


def test_cmr_rejects_unknown_parameters(server):
    import requests

    response = requests.get(f"{server.root}/cmr/granules.umm_json", params={"foo": "1"}, timeout=5)
    assert response.status_code == 400 and "foo" in response.json()["errors"][0]
    page = requests.get(
        f"{server.root}/cmr/granules.umm_json",
        params={"short_name": "OPERA_L2_RTC-S1_V1"},
        timeout=5,
    )
    assert len(page.json()["items"]) == 10 and "CMR-Search-After" in page.headers


def test_netrc_password_goes_only_to_earthdata_login(server, monkeypatch, tmp_path):
    """A netrc entry for the host must not make requests add the password elsewhere."""
    for key in ("EARTHDATA_TOKEN", "EARTHDATA_USERNAME", "EARTHDATA_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {server.username} password {server.password}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert run_stage(make_cfg(server, tmp_path)).failed == []
    for r in server.requests:
        if r.headers.get("Authorization", "").startswith("Basic"):
            assert r.path.startswith("/edl/"), r.path


def test_unreadable_burst_names_the_file_and_the_server(server, login, tmp_path):
    missing = next(name for name in server.files if "20210614" in name and "IW2" in name)
    del server.files[missing]
    result = run_stage(make_cfg(server, tmp_path))
    assert len(result.failed) == 1
    assert missing in result.failed[0] and "HTTP 404" in result.failed[0]
    assert not any((tmp_path / "data").rglob("*.tif"))
    assert not server.paths("/hyp3/")  # nothing paid for an event that cannot be made


def test_too_few_acquisitions_before_the_fire(server, login, tmp_path):
    result = run_stage(make_cfg(server, tmp_path, "sar.days_before=10"))
    assert len(result.failed) == 1
    assert "1 full acquisition(s) before 2021-06-20" in result.failed[0]
    assert "sar.days_before" in result.failed[0]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("sar.polarization=HV", "sar.polarization"),
        ("sar.hyp3_looks=5x1", "sar.hyp3_looks"),
        ("sar.coh_formula=ratio", "sar.coh_formula"),
        ("sar.label=all", "sar.label"),
        ("sar.hyp3_url=ftp://x", "sar.hyp3_url"),
        ("sar.search_url=https://user:pw@cmr.example", "sar.search_url"),
        ("sar.days_before=0", "sar.days_before"),
    ],
)
def test_bad_sar_keys_are_one_line_naming_the_key(server, tmp_path, override, key):
    from firedpy_nrt.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        make_cfg(server, tmp_path, override)
    assert key in str(info.value) and "\n" not in str(info.value)


def test_sar_stage_needs_events(server, tmp_path):
    from firedpy_nrt.errors import ConfigError

    cfg = make_cfg(server, tmp_path)
    cfg.events = None
    with pytest.raises(ConfigError, match="events"):
        run_stage(cfg)


@pytest.mark.parametrize(
    ("datapool", "ranges"),
    [("redirect-same", True), ("direct", False), ("redirect", False)],
    ids=["presigned-on-the-same-origin", "direct-without-ranges", "presigned-without-ranges"],
)
def test_datapool_variants_give_the_same_luminance(server, login, tmp_path, datapool, ranges):
    """A pre-signed URL gets no token even on the data pool's own origin; a server that ignores
    Range still gives the right values (the file is read whole)."""
    server.datapool, server.ranges = datapool, ranges
    assert run_stage(make_cfg(server, tmp_path)).failed == []
    lum, transform, _ = _read(outputs(tmp_path)["lum"])
    expected = server.scene.expected_lum(transform, lum.shape)
    np.testing.assert_allclose(lum[~np.isnan(lum)], expected[~np.isnan(expected)], atol=1e-4)
    for r in server.paths("/s3/"):
        assert "Authorization" not in r.headers


def test_prepare_py_stages_sar_leaves_no_secret_anywhere(server, tmp_path):
    """The entry point end to end: exit 0, the layers written, and neither the password nor the
    token in stdout, stderr, the log file, Hydra's saved configs or any output."""
    import os
    import subprocess
    import sys

    events = write_events(tmp_path / "events.geojson")
    env = {
        **os.environ,
        "EARTHDATA_USERNAME": server.username,
        "EARTHDATA_PASSWORD": server.password,
        "NETRC": str(tmp_path / "no-netrc"),
    }
    env.pop("EARTHDATA_TOKEN", None)
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        [
            sys.executable,
            str(root / "prepare.py"),
            "stages=[sar]",
            f"events={events}",
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"sar.search_url={server.root}/cmr",
            f"sar.edl_url={server.root}/edl",
            f"sar.hyp3_url={server.root}/hyp3",
            "sar.hyp3_poll_s=0.02",
            "sar.buffer_m=60",
            "download.progress=false",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert outputs(tmp_path)["lum"].is_file() and outputs(tmp_path)["coh"].is_file()
    text = proc.stdout + proc.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            text += path.read_bytes().decode("latin-1")
    assert server.password not in text and server.token not in text
    assert (tmp_path / "logs").is_dir()
