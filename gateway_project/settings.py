"""Settings: one file, read from environment variables with defaults that run with nothing installed."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default).strip()


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def env_seconds(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name, default)
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number of seconds; got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum:g} seconds; got {raw!r}")
    return value


def env_int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = os.environ.get(name, default)
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number; got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ImproperlyConfigured(f"{name} must be {bound}; got {raw!r}")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name, "1" if default else "0").lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false; got {raw!r}")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# Where the gateway keeps its SQLite database, generated secret key and stdio servers' stderr logs.
DATA_DIR = Path(env_str("GATEWAY_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    # A development gateway keeps a generated key on disk so admin sessions survive restarts.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
# Old keys, newest first: sessions signed and secrets encrypted with them still work (key rotation).
SECRET_KEY_FALLBACKS = env_list("DJANGO_SECRET_KEY_FALLBACKS", "")
# Salt of the key that encrypts saved auth headers and env values (django-fernet-encrypted-fields).
SALT_KEY = "mcp-orchestration-gateway.secrets-at-rest"
DEBUG = env_bool("DJANGO_DEBUG", False)

# --- the original design's variables -------------------------------------------------------
STORAGE_BACKEND = env_choice("STORAGE_BACKEND", "memory", ("memory", "redis"))
REDIS_URL = env_str("REDIS_URL", "redis://localhost:6379/0")
MCP_GATEWAY_TOOL_CACHE_TTL = env_seconds("MCP_GATEWAY_TOOL_CACHE_TTL", 300, minimum=1)
MCP_GATEWAY_DEFAULT_CONNECTION_MODE = env_choice(
    "MCP_GATEWAY_DEFAULT_CONNECTION_MODE", "persistent", ("persistent", "stateless")
)
MCP_GATEWAY_CONNECTION_TIMEOUT = env_seconds("MCP_GATEWAY_CONNECTION_TIMEOUT", 30.0, minimum=0.1)
MCP_GATEWAY_MAX_RETRIES = env_int("MCP_GATEWAY_MAX_RETRIES", 3, minimum=0, maximum=10)
GATEWAY_TRANSPORT = env_choice("GATEWAY_TRANSPORT", "stdio", ("stdio", "http"))
GATEWAY_PORT = env_int("GATEWAY_PORT", 8080, minimum=1, maximum=65535)
# Loopback by default: the original design listened on 0.0.0.0, which exposes an
# unauthenticated gateway holding credentials to the whole network.
GATEWAY_HOST = env_str("GATEWAY_HOST", "127.0.0.1")
GATEWAY_LOG_LEVEL = env_choice("GATEWAY_LOG_LEVEL", "INFO", ("debug", "info", "warning", "error", "critical")).upper()
SERVER_CONFIG_PATH = env_str("SERVER_CONFIG_PATH", "server_config.json")

# --- the gateway's own settings ------------------------------------------------------------
# Default per-call deadline for a downstream tools/call; each server may set its own.
MCP_GATEWAY_CALL_TIMEOUT = env_seconds("MCP_GATEWAY_CALL_TIMEOUT", 60.0, minimum=0.1)
# List every namespaced tool in tools/list beside the three gateway tools, so that a client's
# deferred tool loading can resolve the tool_reference results of tool_search.
MCP_GATEWAY_EXPOSE_TOOLS = env_bool("MCP_GATEWAY_EXPOSE_TOOLS", True)
# How often a process asks the shared cache whether the tool catalog changed elsewhere.
MCP_GATEWAY_CATALOG_POLL_INTERVAL = env_seconds("MCP_GATEWAY_CATALOG_POLL_INTERVAL", 0.5, minimum=0.05)
# SSRF guard (registry/url_guard.py): HTTP servers on loopback or private networks only when allowed.
# Metadata, link-local, unspecified and multicast addresses are refused whatever this says.
MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS = env_bool("MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS", False)
# Tool pinning (registry/pinning.py): tools seen for the first time are approved at once; off, they wait
# for an admin like changed ones do.
MCP_GATEWAY_AUTO_APPROVE_NEW_TOOLS = env_bool("MCP_GATEWAY_AUTO_APPROVE_NEW_TOOLS", True)
# Longest tool or parameter description kept (registry/sanitize.py); longer ones are cut and flagged.
MCP_GATEWAY_MAX_DESCRIPTION_LENGTH = env_int("MCP_GATEWAY_MAX_DESCRIPTION_LENGTH", 4000, minimum=100)
# Per-server guards of the call path (proxy/supervision.py): consecutive failures that open a
# server's circuit, how long it stays open, calls in flight per server, the largest result passed on.
MCP_GATEWAY_CIRCUIT_FAILURES = env_int("MCP_GATEWAY_CIRCUIT_FAILURES", 5, minimum=1)
MCP_GATEWAY_CIRCUIT_COOLDOWN = env_seconds("MCP_GATEWAY_CIRCUIT_COOLDOWN", 30.0, minimum=0.1)
MCP_GATEWAY_MAX_CONCURRENT_CALLS = env_int("MCP_GATEWAY_MAX_CONCURRENT_CALLS", 32, minimum=1)
MCP_GATEWAY_MAX_RESULT_BYTES = env_int("MCP_GATEWAY_MAX_RESULT_BYTES", 10 * 1024 * 1024, minimum=1024)
# Seconds between health probes of every enabled server (one process probes, holding a lease in the cache); 0: off.
MCP_GATEWAY_HEALTH_INTERVAL = env_seconds("MCP_GATEWAY_HEALTH_INTERVAL", 30.0)
# Days of call history kept; older records are pruned (prune_call_history, and hourly by the history writer).
MCP_GATEWAY_CALL_HISTORY_DAYS = env_int("MCP_GATEWAY_CALL_HISTORY_DAYS", 30, minimum=1)
# Largest arguments/result stored per call, for servers with store_call_payloads; bigger ones are cut.
MCP_GATEWAY_CALL_PAYLOAD_MAX_BYTES = env_int("MCP_GATEWAY_CALL_PAYLOAD_MAX_BYTES", 16384, minimum=256)
# /mcp without Mcp-Session-Id, so any process behind a round-robin load balancer can answer any
# request. Off: 2025-era clients get sessions held by one process (sticky load balancing needed).
GATEWAY_MCP_STATELESS = env_bool("GATEWAY_MCP_STATELESS", True)
# Largest /mcp request body accepted; a bigger one is refused with 413 before it is parsed.
GATEWAY_MAX_BODY_BYTES = env_int("GATEWAY_MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024)
# On SIGTERM, how long in-flight requests may run before the process closes them and exits.
GATEWAY_SHUTDOWN_GRACE = env_seconds("GATEWAY_SHUTDOWN_GRACE", 30.0, minimum=0.1)
# GET /debug/runtime answers the process's asyncio task count, open files and memory (benchmarks/soak.py).
GATEWAY_DEBUG_RUNTIME = env_bool("GATEWAY_DEBUG_RUNTIME", False)

_LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ALLOWED_HOSTS = env_list("GATEWAY_ALLOWED_HOSTS", ",".join(_LOOPBACK_HOSTS))
if GATEWAY_HOST not in ("0.0.0.0", "::", "") and GATEWAY_HOST not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(GATEWAY_HOST)
# Origins a browser may call /mcp from (DNS-rebinding protection); loopback origins by default.
MCP_ALLOWED_ORIGINS = env_list("GATEWAY_ALLOWED_ORIGINS", "http://127.0.0.1:*,http://localhost:*,http://[::1]:*")
CSRF_TRUSTED_ORIGINS = env_list("GATEWAY_CSRF_TRUSTED_ORIGINS", "")
# /mcp and /api/v1 need a bearer token (manage.py create_token). Off is allowed on loopback only.
GATEWAY_AUTH = env_choice("GATEWAY_AUTH", "on", ("on", "off")) == "on"

# Served over HTTPS (directly or behind a TLS-terminating proxy): secure cookies, HSTS, HTTP -> HTTPS.
GATEWAY_HTTPS = env_bool("GATEWAY_HTTPS", False)
SECURE_SSL_REDIRECT = GATEWAY_HTTPS
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = GATEWAY_HTTPS
SECURE_HSTS_SECONDS = env_int("GATEWAY_HSTS_SECONDS", 31536000 if GATEWAY_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("GATEWAY_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("GATEWAY_HSTS_PRELOAD", False)
if env_bool("GATEWAY_TRUST_X_FORWARDED_PROTO", False):
    # Only behind a proxy that sets this header itself: a client could otherwise claim HTTPS.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HSTS preload binds the whole registrable domain, a decision for its owner: opt in with GATEWAY_HSTS_PRELOAD.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "registry",
    "monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The admin's CSS and JS, served by the gateway itself (no collectstatic, no separate web server).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "gateway_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
ASGI_APPLICATION = "gateway_project.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'gateway.sqlite3'}"), conn_max_age=60, conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database that is down or unreachable fails a request in seconds instead of hanging it.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several threads (admin, discovery, the MCP endpoint) write; wait for the lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, so gateway processes started by the tests share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test_gateway.sqlite3")}

CACHE_KEY_PREFIX = env_str("GATEWAY_CACHE_PREFIX", "mcp-gateway")
if STORAGE_BACKEND == "redis":
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "TIMEOUT": MCP_GATEWAY_TOOL_CACHE_TTL,
            # Short: with Redis down or hung, each request waits at most this long before using the database.
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "mcp-gateway",
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "TIMEOUT": MCP_GATEWAY_TOOL_CACHE_TTL,
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"  # only for collectstatic; WhiteNoise serves from the apps' folders
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # stderr always: in stdio mode stdout carries the MCP protocol.
    # Credentials that slip into a log message anyway are masked (registry/redaction.py).
    "filters": {"redact": {"()": "registry.redaction.RedactSecrets"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["stderr"], "level": GATEWAY_LOG_LEVEL},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "mcp": {"level": "WARNING" if GATEWAY_LOG_LEVEL != "DEBUG" else "DEBUG"},
    },
}

# With Redis down, cache reads answer "missing" instead of raising: the catalog then comes
# from the database and the memory of each process, and the gateway keeps serving.
DJANGO_REDIS_IGNORE_EXCEPTIONS = True
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
