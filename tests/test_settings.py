"""Settings are read once from the environment; a bad value names its variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reelwire.settings import Settings, SettingsError

GOOD_SECRET = "x" * 40


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.home == Path(".reelwire").absolute()
    assert settings.database_url is None and settings.embedded_postgres
    assert settings.redis_url is None and settings.embedded_redis
    assert settings.cors_origins == ()
    assert settings.log_level == "INFO"
    assert settings.access_token_minutes == 15 and settings.refresh_token_days == 7


def test_values_are_read() -> None:
    settings = Settings.from_env(
        {
            "HOST": "0.0.0.0",
            "PORT": "9000",
            "REELWIRE_HOME": "/tmp/rw",
            "DATABASE_URL": "postgresql://u:p@db:5432/reelwire",
            "REDIS_URL": "redis://cache:6379/0",
            "JWT_SECRET_KEY": GOOD_SECRET,
            "CORS_ORIGINS": "https://a.example.com, http://localhost:3000/",
            "LOG_LEVEL": "debug",
        }
    )
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert settings.home == Path("/tmp/rw")
    assert settings.cors_origins == ("https://a.example.com", "http://localhost:3000")
    assert settings.log_level == "DEBUG"
    assert not settings.embedded_postgres and not settings.embedded_redis


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"DATABASE_URL": "mysql://x", "JWT_SECRET_KEY": GOOD_SECRET}, "DATABASE_URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"JWT_SECRET_KEY": "short"}, "JWT_SECRET_KEY"),
        ({"CORS_ORIGINS": "not an origin"}, "CORS_ORIGINS"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"ACCESS_TOKEN_EXPIRE_MINUTES": "0"}, "ACCESS_TOKEN_EXPIRE_MINUTES"),
        ({"DATABASE_URL": "postgresql://db/x"}, "JWT_SECRET_KEY"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}: "):
        Settings.from_env(env)


def test_bad_value_stops_startup_with_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "PORT": "eighty", "REELWIRE_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "reelwire", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["reelwire: configuration error: PORT: expected a whole number, got 'eighty'"]
    assert not (tmp_path / "postgres").exists()
