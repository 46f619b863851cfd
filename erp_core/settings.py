"""Settings: `config/erp.toml` (or the file named by ``ERP_CONFIG``), overridden by ``ERP_*``."""

from __future__ import annotations

import json
import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(Exception):
    """Raised when the configuration cannot be read or is invalid."""


class Settings(BaseModel):
    """Process-wide settings. Tenant settings live in the database, not here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = "sqlite:///var/erp.sqlite"
    broker_url: str = "sqla+sqlite:///var/broker.sqlite"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    secret_key: str = "change-me-in-production"
    secure_cookies: bool = False
    session_hours: int = Field(default=12, ge=1)
    login_max_failures: int = Field(default=5, ge=1)
    login_window_minutes: int = Field(default=15, ge=1)
    login_lock_minutes: int = Field(default=15, ge=1)
    default_currency: str = "CNY"
    default_timezone: str = "Asia/Shanghai"
    default_locale: str = "zh_CN"
    plugins: list[str] = Field(default_factory=list)
    log_level: str = "INFO"
    var_dir: str = "var"
    # Run the worker and scheduler inside `erp serve` (embedded mode). None = automatic:
    # on when the broker is the embedded SQLite queue.
    embedded_worker: bool | None = None

    @field_validator("database_url")
    @classmethod
    def _check_db(cls, v: str) -> str:
        if not (v.startswith("sqlite") or v.startswith("postgresql")):
            raise ValueError("database_url must be a sqlite:// or postgresql+psycopg:// URL")
        return v

    @property
    def var_path(self) -> Path:
        p = Path(self.var_dir)
        return p if p.is_absolute() else PROJECT_ROOT / p

    def resolved_database_url(self) -> str:
        return _resolve_sqlite(self.database_url, self.var_path.parent)

    def resolved_broker_url(self) -> str:
        return _resolve_sqlite(self.broker_url, self.var_path.parent)

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    @property
    def broker_is_embedded(self) -> bool:
        return self.broker_url.startswith("sqla+")

    @property
    def run_embedded_worker(self) -> bool:
        return self.broker_is_embedded if self.embedded_worker is None else self.embedded_worker


def _resolve_sqlite(url: str, base: Path) -> str:
    """Make ``sqlite:///relative/path`` absolute against ``base`` and create its folder."""
    for prefix in ("sqla+sqlite:///", "sqlite+pysqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            rest = url[len(prefix) :]
            if rest.startswith(":memory:") or rest == "":
                return url
            path = Path(rest)
            if not path.is_absolute():
                path = base / path
            path.parent.mkdir(parents=True, exist_ok=True)
            return prefix + str(path)
    return url


def _coerce_env(name: str, raw: str, field_type: Any) -> Any:
    if name == "plugins":
        raw = raw.strip()
        if raw.startswith("["):
            return json.loads(raw)
        return [p.strip() for p in raw.split(",") if p.strip()]
    return raw


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read the TOML file, then ``ERP_*`` environment variables, then ``overrides``."""
    path = Path(config_file or os.environ.get("ERP_CONFIG") or PROJECT_ROOT / "config" / "erp.toml")
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path}: invalid TOML: {exc}") from exc
    elif config_file or os.environ.get("ERP_CONFIG"):
        raise SettingsError(f"configuration file not found: {path}")
    for name, field in Settings.model_fields.items():
        env = os.environ.get(f"ERP_{name.upper()}")
        if env is not None:
            data[name] = _coerce_env(name, env, field.annotation)
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise SettingsError(f"invalid setting {loc!r}: {first['msg']}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
