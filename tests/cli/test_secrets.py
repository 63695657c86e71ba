"""Secrets never reach the disk through a config: refused on the command line before Hydra
writes anything, and redacted from whatever a run saves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from firedpy_nrt.redaction import has_url_credentials, is_secret_key, redact, redact_saved_configs

ROOT = Path(__file__).resolve().parents[2]
SECRET = "S3cr3t-pw-4711"


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("download.cdse.password", True),
        ("+download.cdse.password", True),
        ("download.cdse.client_secret", True),
        ("sar.token", True),
        ("earthdata_token", True),
        ("download.stac.api_key", True),
        ("download.stac.API-KEY", True),
        ("download.cdse.Password", True),
        ("aws.secret_access_key", True),
        ("aws.secret-key", True),
        ("sar.edl_bearer", True),
        ("download.http.authorization", True),
        ("download.cdse.auth_url", False),
        ("download.cdse.token_url", False),
        ("download.cdse.token_margin_s", False),
        ("trainer.max_epochs", False),
        ("model.net.weights_path", False),
    ],
)
def test_which_keys_are_secrets(key, secret):
    assert is_secret_key(key) is secret


def test_url_credentials_and_redaction():
    assert has_url_credentials(f"https://me:{SECRET}@hub.example/api")
    assert not has_url_credentials("https://catalogue.dataspace.copernicus.eu/odata/v1")
    cleaned = redact(
        {
            "download": {"cdse": {"password": SECRET, "token_url": "https://x/token"}},
            "url": f"https://me:{SECRET}@hub/api",
            "overrides": [f"+download.cdse.password={SECRET}", "trainer.max_epochs=3"],
        }
    )
    assert SECRET not in str(cleaned)
    assert cleaned["download"]["cdse"]["token_url"] == "https://x/token"
    assert cleaned["overrides"][1] == "trainer.max_epochs=3"


def test_saved_hydra_configs_are_rewritten_without_secrets(tmp_path):
    (tmp_path / "config.yaml").write_text(f"a:\n  password: {SECRET}\n  b: 1\n")
    (tmp_path / "overrides.yaml").write_text(f"- +a.password={SECRET}\n- a.b=1\n")
    (tmp_path / "hydra.yaml").write_text("x: 1\n")
    before = (tmp_path / "hydra.yaml").stat().st_mtime_ns
    redact_saved_configs(tmp_path)
    for path in tmp_path.iterdir():
        assert SECRET not in path.read_text()
    assert OmegaConf.load(tmp_path / "config.yaml").a.b == 1
    assert (tmp_path / "hydra.yaml").stat().st_mtime_ns == before  # nothing to redact: untouched


@pytest.mark.parametrize(
    ("script", "override", "key"),
    [
        ("prepare.py", f"+download.cdse.password={SECRET}", "download.cdse.password"),
        ("prepare.py", f"download.cdse.catalogue_url=https://me:{SECRET}@host/odata/v1",
         "download.cdse.catalogue_url"),
        ("train.py", f"+logger.mlflow.token={SECRET},{SECRET}x", "logger.mlflow.token"),
        ("predict.py", f"+data.api_key={SECRET}", "data.api_key"),
    ],
)  # fmt: skip
def test_secret_overrides_are_refused_before_anything_is_written(tmp_path, script, override, key):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    logs = tmp_path / "logs"
    args = [sys.executable, str(ROOT / script), f"paths.log_dir={logs}",
            f"paths.data_dir={tmp_path / 'data'}", override]  # fmt: skip
    if "," in override:
        args.insert(2, "-m")
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"config key '{key}'" in lines[0]
    assert SECRET not in proc.stderr + proc.stdout
    assert not logs.exists() and not (tmp_path / "outputs").exists()
    assert not any(
        SECRET in p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()
    )
