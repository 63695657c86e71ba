"""The ``dhus`` provider: sentinelsat against a loopback DHuS hub, our transfer for the bytes."""

from __future__ import annotations

import pytest

from firedpy_nrt.config.download import DownloadConfig
from firedpy_nrt.errors import CredentialsError
from firedpy_nrt.prepare.download import build_providers, download_events
from firedpy_nrt.prepare.download.manifest import read_manifest
from firedpy_nrt.prepare.events import read_events

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]


def _config(dhus) -> DownloadConfig:
    cfg = DownloadConfig(sentinel_provider="dhus", progress=False, backoff_s=0.01, retries=1)
    cfg.dhus.api_url = dhus.url()
    return cfg


def test_dhus_search_and_download(dhus, cdse, events_file, tmp_path, monkeypatch):
    monkeypatch.setenv("DHUS_USERNAME", cdse.username)
    monkeypatch.setenv("DHUS_PASSWORD", cdse.password)
    product = cdse.sentinel("uuid-1", "20200412")
    dhus.products[product.id] = product
    providers = build_providers(_config(dhus), ["sentinel"])
    events = read_events(events_file, ids=[9844])
    result = download_events(events, providers, tmp_path / "scenes", _config(dhus))
    assert (result.written, result.failed) == (1, [])
    folder = tmp_path / "scenes" / "9844" / "sentinel" / product.name
    assert (folder / "manifest.safe").is_file()
    (entry,) = read_manifest(tmp_path / "scenes" / "9844")
    assert entry["provider"] == "dhus" and entry["checksum"]["value"] == product.md5
    assert entry["sensing_time"].startswith("2020-04-12T18:09:11")
    (query,) = dhus.queries
    assert 'producttype:"S2MSI2A"' in query and "Intersects(POLYGON((" in query
    assert 'beginPosition:["2020-04-07T00:00:00Z" TO "2020-06-20T00:00:00Z"]' in query


def test_dhus_wrong_password(dhus, events_file, tmp_path, monkeypatch):
    monkeypatch.setenv("DHUS_USERNAME", "someone")
    monkeypatch.setenv("DHUS_PASSWORD", "wrong-password")
    providers = build_providers(_config(dhus), ["sentinel"])
    events = read_events(events_file, ids=[9844])
    with pytest.raises(CredentialsError, match="refused the credentials") as info:
        download_events(events, providers, tmp_path / "scenes", _config(dhus))
    assert "wrong-password" not in str(info.value)
