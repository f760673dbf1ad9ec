#!/usr/bin/env bash
# One command: install the gateway into .venv, register the demo servers of server_config.json,
# discover their tools, create an admin login, and serve admin + /mcp on 127.0.0.1.
#   bash scripts/demo.sh            (GATEWAY_PORT, GATEWAY_HOST and the other variables apply)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 or newer is needed" >&2; exit 2; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[demo]" 2>&1 | grep -v '^WARNING: Location' || true
export PATH="$PWD/.venv/bin:$PATH"   # the demo's stdio servers (mcp-server-time, python) come from here
export GATEWAY_HOST="${GATEWAY_HOST:-127.0.0.1}" GATEWAY_PORT="${GATEWAY_PORT:-8080}"
# The demo serves loopback only, without tokens. GATEWAY_AUTH=on creates a token and prints it.
export GATEWAY_AUTH="${GATEWAY_AUTH:-off}"
python manage.py migrate -v 0
python manage.py import_servers "${SERVER_CONFIG_PATH:-server_config.json}" --discover
login="$(python manage.py ensure_admin)"
header=""
if [ "$GATEWAY_AUTH" = "on" ]; then
  token="$(python manage.py create_token "demo-$(date +%Y%m%d-%H%M%S)" 2>/dev/null)"
  header=" --header \"Authorization: Bearer $token\""
fi
cat <<MSG

  Admin:        http://$GATEWAY_HOST:$GATEWAY_PORT/admin/   ($login)
  MCP endpoint: http://$GATEWAY_HOST:$GATEWAY_PORT/mcp   (GATEWAY_AUTH=$GATEWAY_AUTH)
  Connect Claude Code:  claude mcp add --transport http gateway http://$GATEWAY_HOST:$GATEWAY_PORT/mcp$header

MSG
exec mcp-orchestration-gateway --transport http --no-import
