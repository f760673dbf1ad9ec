"""`manage.py check_production` says what must change before running several processes in production."""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import PYTHON, ROOT


def check_production(**env: str) -> subprocess.CompletedProcess:
    full_env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "STORAGE_BACKEND", "DJANGO_SECRET_KEY")
    }
    return subprocess.run(
        [PYTHON, "manage.py", "check_production"],
        cwd=ROOT,
        env={**full_env, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_development_setup_is_refused_with_what_to_change(tmp_path):
    run = check_production(GATEWAY_DATA_DIR=str(tmp_path), GATEWAY_AUTH="off", STORAGE_BACKEND="memory")
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "the database is sqlite: several processes need PostgreSQL (DATABASE_URL=" in out
    assert "STORAGE_BACKEND is memory" in out
    assert "DJANGO_SECRET_KEY is not set" in out
    assert "GATEWAY_AUTH is off" in out
    assert "problem(s) to fix before running in production" in out


@pytest.mark.production
def test_a_production_setup_passes_and_an_unreachable_redis_or_missing_migrations_do_not(
    tmp_path, postgres, redis_server
):
    env = {
        "GATEWAY_DATA_DIR": str(tmp_path),
        "DATABASE_URL": postgres.url,
        "STORAGE_BACKEND": "redis",
        "REDIS_URL": redis_server.url,
        "DJANGO_SECRET_KEY": "a-long-random-value-for-this-test-only",
        "GATEWAY_AUTH": "on",
        "GATEWAY_ALLOWED_HOSTS": "mcp.example.com",
    }
    before = check_production(**env)
    assert before.returncode != 0 and "migrations are not applied: run `manage.py migrate` once" in before.stdout
    subprocess.run(
        [PYTHON, "manage.py", "migrate"], cwd=ROOT, env={**os.environ, **env}, check=True, capture_output=True
    )
    ready = check_production(**env)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert "the production configuration looks right" in ready.stdout
    redis_server.stop()
    down = check_production(**env)
    assert down.returncode != 0 and "Redis at REDIS_URL is not reachable" in down.stdout
