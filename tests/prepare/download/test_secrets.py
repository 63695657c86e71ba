"""A whole ``prepare.py`` run: exit code, failure log, and no secret anywhere it writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parents[3]


def test_run_writes_no_password_or_token_and_fails_loudly(cdse, tmp_path, events_file):
    good = cdse.sentinel("good", "20200412", faults={"revoke", "cut"})
    bad = cdse.sentinel("bad", "20200427", faults={"bad_md5"})
    cfg = cdse.config()
    data, logs = tmp_path / "data", tmp_path / "logs"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "CDSE_USERNAME": cdse.username,
        "CDSE_PASSWORD": cdse.password,
        "NETRC": str(tmp_path / "no-netrc"),
    }
    command = [
        sys.executable,
        str(ROOT / "prepare.py"),
        "stages=[download]",
        "download=cdse",
        f"events={events_file}",
        "event_ids=[9844]",
        f"paths.data_dir={data}",
        f"paths.log_dir={logs}",
        f"download.cdse.token_url={cfg['cdse']['token_url']}",
        f"download.cdse.catalogue_url={cfg['cdse']['catalogue_url']}",
        f"download.cdse.download_url={cfg['cdse']['download_url']}",
        "download.cdse.trusted_hosts=[localhost]",
        "download.backoff_s=0.01",
        "download.backoff_max_s=0.02",
        "download.retries=1",
        "hydra.verbose=true",  # debug records of every library, to be thorough
    ]
    proc = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert (data / "scenes" / "9844" / "sentinel" / good.name / "manifest.safe").is_file()
    assert not (data / "scenes" / "9844" / "sentinel" / bad.name).exists()
    (log_file,) = logs.rglob("*.log")
    failures = [line for line in log_file.read_text().splitlines() if "failed:" in line]
    assert any(bad.name in line and "checksum mismatch" in line for line in failures)
    assert (logs / "prepare").is_dir() and list(logs.rglob(".hydra/config.yaml"))
    assert "refresh_token" in cdse.grants  # the token was renewed during the run

    secrets = [cdse.password, *cdse.issued]
    assert len(cdse.issued) >= 4
    texts = {"stdout": proc.stdout, "stderr": proc.stderr}
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix not in (".jp2", ".gpkg"):
            texts[str(path)] = path.read_text(errors="replace")
    leaks = [(where, s[:6]) for where, text in texts.items() for s in secrets if s in text]
    assert leaks == []


def test_a_netrc_that_is_not_utf8_is_one_line(tmp_path, monkeypatch):
    from firedpy_nrt.errors import CredentialsError
    from firedpy_nrt.prepare.download.credentials import cdse_credentials

    netrc = tmp_path / "netrc"
    netrc.write_bytes(b"machine identity.dataspace.copernicus.eu login me password \xff\xfe\n")
    monkeypatch.setenv("NETRC", str(netrc))
    for var in ("CDSE_USERNAME", "CDSE_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(CredentialsError, match=r"netrc: not a UTF-8 text file") as exc:
        cdse_credentials()
    assert "\n" not in str(exc.value)
