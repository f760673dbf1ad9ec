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

_LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ALLOWED_HOSTS = env_list("GATEWAY_ALLOWED_HOSTS", ",".join(_LOOPBACK_HOSTS))
if GATEWAY_HOST not in ("0.0.0.0", "::", "") and GATEWAY_HOST not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(GATEWAY_HOST)
# Origins a browser may call /mcp from (DNS-rebinding protection); loopback origins by default.
MCP_ALLOWED_ORIGINS = env_list("GATEWAY_ALLOWED_ORIGINS", "http://127.0.0.1:*,http://localhost:*,http://[::1]:*")
CSRF_TRUSTED_ORIGINS = env_list("GATEWAY_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "registry",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
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
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'gateway.sqlite3'}"), conn_max_age=60
    )
}
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
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
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
STATIC_ROOT = DATA_DIR / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # stderr always: in stdio mode stdout carries the MCP protocol.
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
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
