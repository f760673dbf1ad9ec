#!/usr/bin/env bash
# One command: install the gateway with its test dependencies into .venv and run the whole suite,
# first on SQLite + the in-process cache, then on PostgreSQL + Redis (the production setup).
#   bash scripts/test.sh [pytest args]
# The production run needs PostgreSQL at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test)
# and Redis at TEST_REDIS_URL (default redis://127.0.0.1:6379/0). Without them it is skipped with a
# warning, unless GATEWAY_REQUIRE_PRODUCTION_TESTS=1 (as CI sets), which makes it mandatory.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v '^WARNING: Location' || true
export PATH="$PWD/.venv/bin:$PATH"
# The dashboard's browser test drives Debian's Chromium (Playwright never downloads a browser here).
if [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium (Debian package) for tests/test_dashboard_browser.py"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

echo "== tests on SQLite + in-process cache"
GATEWAY_CACHE_PREFIX="test-run-$$" python -m pytest "$@"

PG_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS="${TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
if ! python - "$PG_URL" "$REDIS" <<'PY'
import sys, psycopg, redis
psycopg.connect(sys.argv[1].replace("postgres://", "postgresql://"), connect_timeout=3).close()
redis.Redis.from_url(sys.argv[2], socket_connect_timeout=3).ping()
PY
then
  if [ "${GATEWAY_REQUIRE_PRODUCTION_TESTS:-0}" = 1 ]; then
    echo "PostgreSQL ($PG_URL) or Redis ($REDIS) is not reachable, and the production tests are mandatory here" >&2
    exit 1
  fi
  echo "WARNING: PostgreSQL or Redis not reachable: the production run (PostgreSQL + Redis) was skipped" >&2
  exit 0
fi
echo "== tests on PostgreSQL + Redis"
GATEWAY_CACHE_PREFIX="test-run-$$" DATABASE_URL="$PG_URL" STORAGE_BACKEND=redis REDIS_URL="$REDIS" GATEWAY_REQUIRE_PRODUCTION_TESTS=1 \
  python -m pytest "$@"
