"""Settings: TOML file, ERP_* overrides, validation with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from erp_core.settings import SettingsError, load_settings


def test_defaults_are_embedded(monkeypatch):
    for var in ("ERP_DATABASE_URL", "ERP_BROKER_URL", "ERP_CONFIG", "ERP_PORT"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert s.database_url.startswith("sqlite:///var/")
    assert s.broker_is_embedded and s.run_embedded_worker
    assert s.default_currency == "CNY" and s.default_timezone == "Asia/Shanghai"
    assert s.default_locale == "zh_CN"
    assert s.resolved_database_url().startswith("sqlite:////")


def test_environment_overrides_file(tmp_path: Path, monkeypatch):
    cfg = tmp_path / "erp.toml"
    cfg.write_text('port = 9000\nplugins = ["a"]\n', encoding="utf-8")
    monkeypatch.setenv("ERP_CONFIG", str(cfg))
    assert load_settings().port == 9000
    monkeypatch.setenv("ERP_PORT", "9100")
    monkeypatch.setenv("ERP_PLUGINS", "oms, wms")
    monkeypatch.setenv("ERP_DATABASE_URL", "postgresql+psycopg://u:p@h/db")
    monkeypatch.setenv("ERP_BROKER_URL", "redis://127.0.0.1:6379/0")
    s = load_settings()
    assert s.port == 9100 and s.plugins == ["oms", "wms"]
    assert s.is_postgres and not s.broker_is_embedded and not s.run_embedded_worker


@pytest.mark.parametrize(
    "env,message",
    [
        ({"ERP_PORT": "0"}, "invalid setting 'port'"),
        ({"ERP_DATABASE_URL": "mysql://x"}, "invalid setting 'database_url'"),
        ({"ERP_SECURE_COOKIES": "perhaps"}, "invalid setting 'secure_cookies'"),
    ],
)
def test_invalid_values_are_reported(monkeypatch, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_bad_file(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1", encoding="utf-8")
    with pytest.raises(SettingsError, match="invalid TOML"):
        load_settings(bad)
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "missing.toml")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'", encoding="utf-8")
    with pytest.raises(SettingsError, match="colour"):
        load_settings(unknown)
