"""Serve the MCP server over Streamable HTTP (`sidecar serve --transport http`), guarded.

Every request must carry `Authorization: Bearer <token>` (the token comes from the environment
variable named by `http.token_env`), a `Host` naming this server and, if it has an `Origin`, an
allowed one (DNS-rebinding protection). Binding a non-loopback address needs `--allow-remote`.
The token is never logged, echoed or put in an error message. `GET /healthz` needs nothing (load
balancers and probes); `GET /metrics` passes the same checks as `/mcp` (DESIGN.md §4.7). Connection
limits and read deadlines are sidecar/http_guard.py's; refused requests are logged at a bounded rate.

This module owns the HTTP edge only: it must not know about tools, the service or the exchange.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import ipaddress
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

import structlog
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sidecar.env import Environment
from sidecar.errors import ExitCode, SidecarError, UsageError
from sidecar.http_guard import ConnectionGuard, ConnectionLimits
from sidecar.logs import register_secret

if TYPE_CHECKING:
    from sidecar.config import SidecarConfig

__all__ = [
    "HEALTH_PATH",
    "MAX_BODY_BYTES",
    "MCP_PATH",
    "METRICS_PATH",
    "MIN_TOKEN_LEN",
    "BearerGuard",
    "HealthAndMetrics",
    "allowed_hosts_for",
    "allowed_origins_for",
    "build_http_app",
    "http_refusal",
    "is_loopback",
    "run_http",
    "token_problem",
]

log = structlog.get_logger("http")

MCP_PATH = "/mcp"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
MIN_TOKEN_LEN = 16
# An amend batch of 20 items is a few KiB; anything this large is abuse (the SDK answers 413).
MAX_BODY_BYTES = 64 * 1024
# A stop lets calls in flight finish for this long, then cancels them (their results are stored
# as they stand); bounded so an open SSE stream cannot keep a stopping server alive. With the
# service and journal closing after it, SIGTERM/SIGINT stop the process within 2 s.
_GRACEFUL_SHUTDOWN_S = 1
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals; any other name or address counts as remote."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_problem(token: str | None) -> str | None:
    """Why `token` cannot guard the endpoint, or None if it can (never includes the token itself)."""
    if not token:
        return "is not set"
    if len(token) < MIN_TOKEN_LEN:
        return f"is shorter than {MIN_TOKEN_LEN} characters"
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        return "must be printable ASCII without spaces"
    return None


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def allowed_hosts_for(host: str, port: int, extra: Iterable[str] = ()) -> list[str]:
    """Host header values accepted: the bound host and the loopback names, all with this port."""
    names = {host.strip("[]"), *_LOOPBACK_NAMES}
    return sorted({_authority(n, port).lower() for n in names} | {h.lower() for h in extra})


def allowed_origins_for(port: int, extra: Iterable[str] = ()) -> list[str]:
    """Origin header values accepted (a request without Origin is not a browser's and passes)."""
    base = {f"http://127.0.0.1:{port}", f"http://localhost:{port}"}
    return sorted(base | {o.lower().rstrip("/") for o in extra})


class HealthAndMetrics(Protocol):
    """What `/healthz` and `/metrics` serve (sidecar/metrics.py's `Observability`)."""

    def health(self) -> tuple[int, dict[str, Any]]: ...

    def exposition(self, accept: str | None) -> tuple[bytes, str]: ...


class HealthAndMetricsRoutes:
    """Pure ASGI: `GET /healthz` and `GET /metrics` from `source`; every other request to `app`."""

    def __init__(self, app: ASGIApp, source: HealthAndMetrics) -> None:
        self._app = app
        self._source = source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path") if scope["type"] == "http" else None
        if path not in (HEALTH_PATH, METRICS_PATH):
            await self._app(scope, receive, send)
            return
        response: Response
        if scope["method"] not in ("GET", "HEAD"):
            response = PlainTextResponse("method not allowed", status_code=405, headers={"Allow": "GET"})
        elif path == HEALTH_PATH:
            status, body = self._source.health()
            response = JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})
        else:
            data, content_type = self._source.exposition(Headers(scope=scope).get("accept"))
            response = Response(data, headers={"Content-Type": content_type, "Cache-Control": "no-store"})
        await response(scope, receive, send)


class BearerGuard:
    """Pure ASGI middleware: Host (421), Origin (403), token in query (400), bearer token (401).

    Checked in that order, before the request reaches routing, so a rejected request costs no
    MCP work. The SDK's own Host/Origin check stays on behind it with the same lists. `open_paths`
    (GET only) pass without any check: they must serve nothing secret. A passed request marks its
    connection authenticated in `guard`, which keeps such connections when it has to shed some.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str,
        allowed_hosts: Iterable[str],
        allowed_origins: Iterable[str],
        guard: ConnectionGuard | None = None,
        open_paths: Iterable[str] = (),
    ) -> None:
        self._app = app
        self._token = token.encode("ascii")
        self._hosts = frozenset(h.lower() for h in allowed_hosts)
        self._origins = frozenset(o.lower().rstrip("/") for o in allowed_origins)
        self._guard = guard if guard is not None else ConnectionGuard()
        self._open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._app(scope, receive, send)
            return
        if scope["type"] != "http":  # no WebSocket endpoint exists; refuse before any handshake
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope.get("path") in self._open_paths and scope.get("method") in ("GET", "HEAD"):
            await self._app(scope, receive, send)
            return
        rejected = self._check(scope)
        if rejected is None:
            self._guard.mark_authenticated(scope.get("client"))
            await self._app(scope, receive, send)
            return
        status, reason, headers = rejected
        client = scope.get("client")
        # A client can send refused requests as fast as it likes: the log line is rate-limited.
        self._guard.report(
            "http.rejected",
            reason=reason,
            status=status,
            method=scope.get("method"),
            path=scope.get("path"),
            client=client[0] if client else None,
        )
        body = {401: "unauthorized", 403: "forbidden origin", 421: "misdirected request (Host)"}
        response = PlainTextResponse(body.get(status, "bad request"), status_code=status, headers=headers)
        await response(scope, receive, send)

    def _check(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        headers = Headers(scope=scope)
        host = headers.get("host")
        if host is None or host.lower() not in self._hosts:
            return 421, "bad_host", {}
        origin = headers.get("origin")
        if origin is not None and origin.lower().rstrip("/") not in self._origins:
            return 403, "bad_origin", {}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "access_token" in query or "token" in query:  # MCP forbids tokens in URLs (they end up in logs)
            return 400, "token_in_query", {}
        # Raw bytes: compare_digest on str raises for non-ASCII input, which a client controls.
        values = [v for k, v in scope["headers"] if k == b"authorization"]
        scheme, _, credential = values[0].partition(b" ") if len(values) == 1 else (b"", b"", b"")
        if scheme.lower() != b"bearer":
            return 401, "token_missing", {"WWW-Authenticate": "Bearer"}
        if not hmac.compare_digest(credential.strip(), self._token):
            return 401, "token_invalid", {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        return None


def build_http_app(
    server: MCPServer[Any],
    token: str,
    host: str,
    port: int,
    allowed_origins: Sequence[str],
    *,
    allowed_hosts: Sequence[str] = (),
    guard: ConnectionGuard | None = None,
    observability: HealthAndMetrics | None = None,
) -> ASGIApp:
    """The guarded Streamable HTTP app for `server` at `/mcp` (port must be the real bound port),
    with `/healthz` and `/metrics` when `observability` is given."""
    if token_problem(token) is not None:
        raise ValueError("the HTTP bearer token is missing or too weak")
    hosts = allowed_hosts_for(host, port, allowed_hosts)
    origins = allowed_origins_for(port, allowed_origins)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )
    app: ASGIApp = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        transport_security=security,
        max_request_body_size=MAX_BODY_BYTES,
        host=host,
    )
    if observability is not None:
        app = HealthAndMetricsRoutes(app, observability)
    return BearerGuard(
        app,
        token=token,
        allowed_hosts=hosts,
        allowed_origins=origins,
        guard=guard,
        open_paths=(HEALTH_PATH,) if observability is not None else (),
    )


class _Server(uvicorn.Server):
    """uvicorn.Server that reports readiness and leaves SIGINT/SIGTERM to the event loop.

    uvicorn's own handlers re-raise the signal after shutdown, which would kill the process
    instead of letting `serve` return 0 and the service close its connections.
    """

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()

    def request_stop(self) -> None:
        # A second signal while draining stops waiting for open connections.
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


def http_refusal(config: SidecarConfig, args: argparse.Namespace, env: Environment) -> str | None:
    """Why `serve --transport http` must not start (exit 2), or None. Cheap: call it before the service."""
    token_env = config.http.token_env
    problem = token_problem(env.value(token_env))
    if problem is not None:
        return (
            f"HTTP transport needs a bearer token: {token_env} {problem} (at least {MIN_TOKEN_LEN} "
            "characters; e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if not is_loopback(args.host) and not getattr(args, "allow_remote", False):
        return f"refusing to serve MCP on non-loopback host {args.host!r} without --allow-remote"
    return None


async def run_http(
    server: MCPServer[Any],
    config: SidecarConfig,
    args: argparse.Namespace,
    banner: Callable[[str], str],
    *,
    env: Environment,
    observability: HealthAndMetrics | None = None,
    limits: ConnectionLimits | None = None,
) -> int:
    """Serve `server` at http://HOST:PORT/mcp until SIGINT/SIGTERM (0). The bearer token is the
    variable `http.token_env` names in `env`.

    Raises:
        UsageError: refused (no usable token, a non-loopback host without --allow-remote).
        SidecarError: the server cannot listen or start.
    """
    refusal = http_refusal(config, args, env)
    if refusal is not None:
        raise UsageError(refusal)
    host: str = args.host
    token = env.value(config.http.token_env)
    assert token is not None  # http_refusal checked it
    remote = not is_loopback(host)
    if remote:
        print(
            f"sidecar: WARNING: serving MCP on non-loopback {host}: anyone who can reach this port and "
            "holds the token can amend orders; the token travels in clear text unless TLS terminates in "
            "front (see docs/http.md)",
            file=sys.stderr,
            flush=True,
        )
    register_secret(token)
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host.strip("[]"), int(args.port)), family=family)
    except OSError as exc:
        raise SidecarError(f"cannot listen on {_authority(host, args.port)}: {exc.strerror or exc}") from None
    port: int = sock.getsockname()[1]
    guard = ConnectionGuard(limits)
    app = build_http_app(
        server,
        token,
        host,
        port,
        config.http.allowed_origins,
        # Not (yet) a config field; read defensively so adding `http.allowed_hosts` just works.
        allowed_hosts=tuple(getattr(config.http, "allowed_hosts", ()) or ()),
        guard=guard,
        observability=observability,
    )
    url = f"http://{_authority(host, port)}{MCP_PATH}"

    def ready() -> None:
        log.info(
            "http.listening",
            host=host,
            port=port,
            path=MCP_PATH,
            remote=remote,
            max_connections=guard.max_connections,
        )
        print(banner(url), file=sys.stderr, flush=True)

    uv_config = uvicorn.Config(
        app,
        log_config=None,  # keep the process's structlog/stdlib set-up
        log_level="warning",
        access_log=False,  # access lines are not needed; headers are never printed anyway
        server_header=False,
        lifespan="on",
        ws="none",
        http=guard.protocol_class(),  # h11 with read deadlines and the connection cap
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
    )
    uv = _Server(uv_config, ready)
    guard.install_log_filter()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, uv.request_stop)
            installed.append(sig)
    try:
        await uv.serve(sockets=[sock])
    except SystemExit:  # uvicorn exits on a failed start-up (it has logged why)
        raise SidecarError(f"HTTP server on {url} failed to start") from None
    finally:
        guard.remove_log_filter()
        for sig in installed:
            loop.remove_signal_handler(sig)
        sock.close()
    log.info("http.stopped", host=host, port=port)
    return ExitCode.OK
