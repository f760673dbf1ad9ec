"""The REST API under /api/v1/: the registry's routes, plus search, calling a tool and health.

Search and calls go through the same functions as the MCP tools (`tool_search`, `call_remote_tool`),
so a program sees the same ranking and the same results as a model does.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Field, NinjaAPI, Query, Schema, Status
from ninja.errors import AuthenticationError, AuthorizationError, HttpError
from ninja.security import HttpBearer

from monitoring.readiness import check_database, check_redis
from proxy.calls import call_tool, current_snapshot, unknown_tool_message
from registry.api import Error, ValidationErrors, field_errors
from registry.api import router as registry_router
from registry.catalog import catalog
from registry.models import Server
from search import MAX_RESULTS, SearchError, SearchResult, regex_search

from .inbound_auth import INVALID, MISSING, bearer_token, challenge, listens_on_loopback, verify
from .search_index import search_index

# --- who may call: the bearer tokens of /mcp (gateway_project/inbound_auth.py) ---------------------

# request.auth when GATEWAY_AUTH is off (a token name never contains parentheses).
AUTH_OFF_CALLER = "(auth off)"


class InvalidBearer(AuthenticationError):
    def __init__(self, invalid: bool) -> None:
        super().__init__(401, "invalid_token" if invalid else "unauthorized")
        self.invalid = invalid


class GatewayBearer(HttpBearer):
    """`request.auth` is the token's name (AUTH_OFF_CALLER when GATEWAY_AUTH is off)."""

    def __call__(self, request: HttpRequest) -> str | None:
        if not settings.GATEWAY_AUTH:
            scope = getattr(request, "scope", None)  # ASGI requests; the test client has none
            if scope is not None and not listens_on_loopback(scope):
                raise AuthorizationError(403, "GATEWAY_AUTH is off: only loopback is served.")
            return AUTH_OFF_CALLER
        raw = bearer_token(request.headers.get("Authorization"))
        if raw is None:
            raise InvalidBearer(invalid=False)
        return self.authenticate(request, raw)

    def authenticate(self, request: HttpRequest, token: str) -> str | None:
        name = verify(token)
        if name is None:
            raise InvalidBearer(invalid=True)
        return name


def unauthorized_response(request: HttpRequest, exc: Exception) -> HttpResponse:
    """The 401 of /mcp, WWW-Authenticate included."""
    invalid = getattr(exc, "invalid", True)
    response = JsonResponse(INVALID if invalid else MISSING, status=401)
    response["WWW-Authenticate"] = challenge(invalid)
    return response


api = NinjaAPI(
    title="MCP Orchestration Gateway API",
    version="1",
    description=(
        "Register servers, discover, search and call their tools, import and export config files. "
        "The same truth as the admin; secrets (auth header values, stdio env values) are write-only."
    ),
    urls_namespace="api-v1",
    auth=GatewayBearer(),  # the bearer tokens of /mcp; request.auth is the token's name
)
api.add_exception_handler(InvalidBearer, unauthorized_response)
api.add_router("/", registry_router)


# --- search ----------------------------------------------------------------------------------------


class SearchIn(Schema):
    query: str = Field(description="What the tool should do, or a regex when use_regex is true")
    max_results: int = Field(10, ge=1, le=MAX_RESULTS)
    use_regex: bool = False


class SearchHitOut(Schema):
    name: str = Field(description="The namespaced name to call")
    score: float = Field(description="BM25F relevance; for regex, 1.0 for a name match and 0.5 elsewhere")
    server: str
    title: str
    description: str


class SearchOut(Schema):
    query: str
    results: list[SearchHitOut]
    total_matches: int


def _search(params: SearchIn, source: str) -> dict[str, Any]:
    snapshot = catalog.current()
    try:
        if params.use_regex:
            result: SearchResult = regex_search(search_index.documents(snapshot), params.query, params.max_results)
        else:
            result = search_index.index(snapshot).search(params.query, params.max_results)
    except SearchError as exc:
        param = "params" if source == "query" else "payload"
        raise field_errors({"query": [str(exc)]}, source=source, param=param) from None
    results = []
    for hit in result.hits:
        entry = snapshot.tools.get(hit.name)
        results.append(
            {
                "name": hit.name,
                "score": round(float(hit.score), 4),
                "server": entry.server if entry else "",
                "title": entry.title if entry else "",
                "description": entry.description if entry else "",
            }
        )
    return {"query": params.query, "results": results, "total_matches": result.total_matches}


@api.get("/search", response={200: SearchOut, 422: ValidationErrors}, tags=["tools"])
def search_get(request: HttpRequest, params: Query[SearchIn]) -> Any:
    """The ranking of the `tool_search` MCP tool, with scores."""
    return _search(params, "query")


@api.post("/search", response={200: SearchOut, 422: ValidationErrors}, tags=["tools"])
def search_post(request: HttpRequest, payload: SearchIn) -> Any:
    """The ranking of the `tool_search` MCP tool, with scores."""
    return _search(payload, "body")


# --- call ------------------------------------------------------------------------------------------


class CallIn(Schema):
    arguments: dict[str, Any] = Field(default_factory=dict, description="The tool's arguments")
    auth_header: str | None = Field(
        None, description="Sent as Authorization to a server whose auth_type is 'forward', and to no other"
    )


class CallOut(Schema):
    """An MCP CallToolResult. A tool's failure is isError=true with status 200, as over MCP."""

    content: list[dict[str, Any]]
    structuredContent: dict[str, Any] | None = None
    isError: bool = False


@api.post("/tools/{name}/call", response={200: CallOut, 404: Error}, tags=["tools"], exclude_none=True)
async def call(request: HttpRequest, name: str, payload: CallIn) -> Any:
    """Call a tool through the same path as `call_remote_tool`."""
    snapshot = await current_snapshot()
    if name not in snapshot.tools:
        raise HttpError(404, unknown_tool_message(snapshot, name))
    caller = getattr(request, "auth", None)
    result = await call_tool(
        name,
        payload.arguments,
        credential=payload.auth_header or None,
        caller=None if caller == AUTH_OFF_CALLER else caller,  # as on /mcp: no name when auth is off
    )
    return result.model_dump(by_alias=True, exclude_none=True, mode="json")


# --- health ----------------------------------------------------------------------------------------


class ServersSummary(Schema):
    total: int
    enabled: int
    ok: int
    error: int
    never_discovered: int
    unhealthy: int = Field(description="Enabled servers whose last periodic health probe failed")
    tools: int


class HealthOut(Schema):
    status: str = Field(description="'ok', or 'unavailable' when the database or Redis cannot be reached")
    database: str
    redis: str = Field(description="'ok', 'not configured' (STORAGE_BACKEND=memory) or why it failed")
    servers: ServersSummary | None


def _servers_summary() -> dict[str, int]:
    counts = {"total": 0, "enabled": 0, "ok": 0, "error": 0, "never_discovered": 0, "unhealthy": 0, "tools": 0}
    for server in Server.objects.select_related("health_probe"):
        counts["total"] += 1
        if server.enabled:
            counts["enabled"] += 1
            counts["tools"] += server.tool_count
            probe = getattr(server, "health_probe", None)
            counts["unhealthy"] += probe is not None and probe.status == "unhealthy"
        health = server.health.replace(" ", "_")
        if health in counts:
            counts[health] += 1
    return counts


@api.get("/health", response={200: HealthOut, 503: HealthOut}, tags=["health"])
def health(request: HttpRequest) -> Any:
    """Database and Redis reachable, and the servers at a glance. 503 when a dependency is down."""
    database = check_database() or "ok"
    redis = check_redis() or ("ok" if settings.STORAGE_BACKEND == "redis" else "not configured")
    servers = _servers_summary() if database == "ok" else None
    ok = database == "ok" and redis in ("ok", "not configured")
    data = {"status": "ok" if ok else "unavailable", "database": database, "redis": redis, "servers": servers}
    return Status(200 if ok else 503, data)
