"""The stdio transport: MCP over this process's stdin/stdout, bounded, answerable, stoppable.

One job: move JSON-RPC lines between fd 0/1 and the MCP server (`serve_stdio(server)`, instead of
the SDK's `run_stdio_async`). What it adds to the SDK's transport:
- A message above `MAX_MESSAGE_BYTES` is never held whole: it is skipped as it streams in and
  answered with a JSON-RPC error (-32600) naming its id when its first bytes show one.
- A line that is not JSON (-32700), not JSON-RPC, or nested deeper than the parser takes (-32600)
  gets an error too. The SDK drops such lines silently, and the caller waits for ever.
- fd 0 is read with asyncio's non-blocking pipe reader (no worker thread blocked in `read`, which
  the SDK's reader is and which no stop can interrupt), so a stop works while stdin stays open:
  given a `stop` event (SIGINT/SIGTERM), the transport stops handing messages over, lets the tool
  calls in flight be answered (at most `drain_s`), then ends the server's input (at most `close_s`).
- While serving, fd 0 points at /dev/null and fd 1 at stderr (as the SDK does), so a stray read or
  print elsewhere in the process can neither steal nor corrupt the wire.
- Optionally (`on_call`), the server-side time of every `tools/call`: from its line being read to its
  answer being written, on the given clock (for `sidecar_mcp_call_seconds` and the benchmarks). Unset,
  the clock is never read.

It must not look inside tool calls or decide anything; errors are the JSON-RPC envelope's only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import anyio
import mcp_types as types
import orjson
import structlog
from mcp.server.mcpserver import MCPServer
from mcp.shared._context_streams import ContextSendStream, create_context_streams
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from sidecar.clock import Clock, SystemClock

__all__ = ["MAX_MESSAGE_BYTES", "OnCallTimed", "serve_stdio"]

log = structlog.get_logger("stdio")

# The largest message read whole. A 20-item batch is ~4 KB; 4 MiB matches the SDK's HTTP limit.
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
_CHUNK: Final = 64 * 1024
_ID_SCAN_BYTES: Final = 64 * 1024  # how much of a rejected message is searched for its id
_PARSE_ERROR: Final = -32700
_INVALID_REQUEST: Final = -32600
# Calls read but not yet answered whose read time is kept: a call the client cancels gets no answer,
# so the oldest is forgotten beyond this many (far above any real number in flight).
_MAX_TIMED_CALLS: Final = 1024

# (read_ns, written_ns) of one `tools/call`, on the clock given to `serve_stdio`.
OnCallTimed = Callable[[int, int], None]


class CallsInFlight(Protocol):
    """What a stop waits for: the tool calls being answered (serve_runtime.CallTracker)."""

    in_flight: int

    async def idle(self) -> None: ...


async def serve_stdio(
    server: MCPServer[Any],
    *,
    stop: asyncio.Event | None = None,
    calls: CallsInFlight | None = None,
    drain_s: float = 0.8,
    close_s: float = 0.3,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    wire: tuple[int, int] | None = None,
    on_call: OnCallTimed | None = None,
    clock: Clock | None = None,
) -> None:
    """Serve `server` over stdin/stdout until stdin closes, `stop` is set, or the task is cancelled.

    On `stop`: no further message is handed to the server; the calls in flight (`calls`) get
    `drain_s` to be answered; then the server's input ends and it gets `close_s` to wind down.
    `wire`: serve these (read, write) file descriptors instead of stdin/stdout (benchmarks, tests);
    they are used as they are and left open for the caller to close.
    `on_call`: called with (read_ns, written_ns) of every `tools/call` once its answer is written,
    both read from `clock` (default: the system clock); it must be cheap and must not raise.
    """
    if wire is None:
        wire_in, wire_out, restore = _claim_std_fds()
    else:
        wire_in, wire_out, restore = os.dup(wire[0]), os.dup(wire[1]), _nothing
    pipes = contextlib.ExitStack()  # closes what wraps the two wire fds (and so the fds) at the end
    try:
        reader = await _open_reader(wire_in, pipes)
        writer = await _open_writer(wire_out, pipes)
        lines = _BoundedLines(reader, max_message_bytes)
        read_send, read_recv = create_context_streams[SessionMessage | Exception](0)
        write_send, write_recv = create_context_streams[SessionMessage](0)
        feed = _Feed()
        timer = None if on_call is None else _CallTimer(clock or SystemClock(), on_call)
        lowlevel = server._lowlevel_server  # what MCPServer.run_stdio_async runs, over our streams

        async def session() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(feed.run, lines, read_send, writer, timer)
                tg.start_soon(_pump_out, write_recv, writer, timer)
                await lowlevel.run(read_recv, write_send, lowlevel.create_initialization_options())
                tg.cancel_scope.cancel()

        task = asyncio.create_task(session(), name="mcp-stdio")
        try:
            if stop is None:
                await task
                return
            stopped = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
            if task.done():
                task.result()
                return
            feed.pause()  # no new call starts; the ones in flight are answered
            if calls is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(drain_s):
                        await calls.idle()
                if calls.in_flight:
                    log.warning("stdio.drain_timeout", in_flight=calls.in_flight)
            feed.end()  # end of input: the server returns
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(close_s):
                    await asyncio.shield(task)
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        pipes.close()
        restore()


class _Feed:
    """Hands messages from stdin to the server until end of input, or until paused and ended."""

    def __init__(self) -> None:
        self._scope: anyio.CancelScope | None = None
        self._paused = False
        self._ended = asyncio.Event()

    async def run(
        self,
        lines: _BoundedLines,
        out: ContextSendStream[SessionMessage | Exception],
        writer: _Writer,
        timer: _CallTimer | None,
    ) -> None:
        with anyio.CancelScope() as scope:
            self._scope = scope
            if not self._paused:
                await _pump_in(lines, out, writer, timer)
        if self._paused:
            await self._ended.wait()  # the stop drains the calls in flight first
        await out.aclose()

    def pause(self) -> None:
        self._paused = True
        if self._scope is not None:
            self._scope.cancel()

    def end(self) -> None:
        self._ended.set()


# ---------------------------------------------------------------------------------------- pumps


async def _pump_in(
    lines: _BoundedLines,
    out: ContextSendStream[SessionMessage | Exception],
    writer: _Writer,
    timer: _CallTimer | None = None,
) -> None:
    """Read lines, hand valid messages to the server, answer the others here (until end of input)."""
    while True:
        line = await lines.next()
        read_ns = timer.now_ns() if timer is not None else 0
        if line is None:
            return  # EOF: the server's read side closes, and it stops
        if isinstance(line, _Oversized):
            await writer.error(
                _find_id(line.head),
                _INVALID_REQUEST,
                f"message too large: {line.size} bytes; at most {lines.limit} bytes are read",
            )
            log.warning("stdio.message_refused", reason="too_large", bytes=line.size)
            continue
        if not line.strip():
            continue
        try:
            message = _decode(line)
        except ValidationError as exc:
            code, text = _why(exc)
            await writer.error(_find_id(line[:_ID_SCAN_BYTES]), code, text)
            log.warning("stdio.message_refused", reason=text, bytes=len(line))
            continue
        if timer is not None:
            timer.read(message, read_ns)
        await out.send(SessionMessage(message))


async def _pump_out(messages: Any, writer: _Writer, timer: _CallTimer | None = None) -> None:
    async with messages:
        async for session_message in messages:
            await writer.write_bytes(_encode(session_message.message))
            if timer is not None:
                timer.written(session_message.message)


class _CallTimer:
    """The read time of each `tools/call` in flight, by JSON-RPC id, until its answer is written."""

    def __init__(self, clock: Clock, on_call: OnCallTimed) -> None:
        self._clock = clock
        self._on_call = on_call
        self._read_ns: dict[str | int, int] = {}

    def now_ns(self) -> int:
        return self._clock.monotonic_ns()

    def read(self, message: types.JSONRPCMessage, read_ns: int) -> None:
        if type(message) is types.JSONRPCRequest and message.method == "tools/call":
            if len(self._read_ns) >= _MAX_TIMED_CALLS:
                del self._read_ns[next(iter(self._read_ns))]
            self._read_ns[message.id] = read_ns

    def written(self, message: types.JSONRPCMessage) -> None:
        if type(message) in (types.JSONRPCResponse, types.JSONRPCError):
            read_ns = self._read_ns.pop(message.id, None)  # type: ignore[union-attr, arg-type]
            if read_ns is not None:
                self._on_call(read_ns, self._clock.monotonic_ns())


# A message with at most this many brackets is at most this deep: far below every parser's limit.
_SHALLOW_BRACKETS: Final = 150
_REQUEST_KEYS: Final = frozenset({"jsonrpc", "id", "method", "params"})


def _decode(line: bytes) -> types.JSONRPCMessage:
    """One line as a JSON-RPC message, exactly as the SDK's adapter reads it.

    The common line (a client's request, shallow) is parsed by orjson and built with the checks
    pydantic would make on its four fields; anything else goes through the SDK's own adapter,
    which also produces the validation errors. Raises ValidationError.
    """
    if line.count(b"{") + line.count(b"[") <= _SHALLOW_BRACKETS:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if (
            type(obj) is dict
            and obj.keys() <= _REQUEST_KEYS
            and obj.get("jsonrpc") == "2.0"
            and type(obj.get("method")) is str
            and type(obj.get("id")) in (int, str)
            and type(obj.get("params", {})) is dict
        ):
            return types.JSONRPCRequest.model_construct(**obj)
    return types.jsonrpc_message_adapter.validate_json(line, by_name=False)


def _encode(message: types.JSONRPCMessage) -> bytes:
    """One message as a JSON line's bytes. A response (the common message: its `result` is already
    plain JSON data, serialised by the SDK) is encoded by orjson; anything else by pydantic. Text
    that is not valid UTF-8 (a lone surrogate, which the stdlib's JSON parser accepts from a peer
    such as the exchange) is written as a JSON escape; a message that cannot be written at all
    becomes an error answer to its request: writing never ends the server."""
    if type(message) is types.JSONRPCResponse:
        try:
            return orjson.dumps({"jsonrpc": "2.0", "id": message.id, "result": message.result})
        except TypeError:
            pass  # not plain JSON data, or a lone surrogate: the slower ways below
    with contextlib.suppress(Exception):  # e.g. a lone surrogate (UTF-8 cannot hold one)
        return message.model_dump_json(by_alias=True, exclude_unset=True).encode("utf-8")
    try:
        data = message.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    except Exception as exc:  # anything else: answer with an error, never raise
        log.error("stdio.unwritable_message", error=type(exc).__name__)
        request_id = getattr(message, "id", None)
        error = {"code": -32603, "message": "internal error: the answer could not be written"}
        return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": error})


def _why(exc: ValidationError) -> tuple[int, str]:
    """The JSON-RPC code and a one-line reason for a line the SDK's parser refused."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    first = str(errors[0].get("msg", "")) if errors else ""
    if "recursion limit" in first:
        return _INVALID_REQUEST, "message nested too deep to parse; send flatter JSON"
    if errors and errors[0].get("type") == "json_invalid":
        return _PARSE_ERROR, "parse error: the line is not valid JSON"
    return _INVALID_REQUEST, "invalid request: not a JSON-RPC 2.0 message"


def _find_id(head: bytes) -> str | int | None:
    """The top-level "id" of a JSON-RPC message from its first bytes, if they show one (None else).

    A small scanner: tracks strings and nesting so an "id" inside `params` is never taken for it.
    """
    depth = 0
    i, n = 0, len(head)
    expect_key = False
    while i < n:
        c = head[i]
        if c == 0x22:  # '"': a string; at depth 1 right after '{' or ',', it is a key
            j = i + 1
            while j < n and head[j] != 0x22:
                j += 2 if head[j] == 0x5C else 1
            if j >= n:
                return None
            if depth == 1 and expect_key and head[i + 1 : j] == b"id":
                k = j + 1
                while k < n and head[k] in b" \t\r\n:":
                    k += 1
                return _id_value(head[k:])
            expect_key = False
            i = j + 1
            continue
        if c in b"{[":
            depth += 1
            expect_key = c == 0x7B and depth == 1
        elif c in b"}]":
            depth -= 1
        elif c == 0x2C:  # ','
            expect_key = depth == 1
        i += 1
    return None


def _id_value(rest: bytes) -> str | int | None:
    end = 0
    if rest[:1] == b'"':
        end = 1
        while end < len(rest) and rest[end] != 0x22:
            end += 2 if rest[end] == 0x5C else 1
        end += 1
    else:
        while end < len(rest) and rest[end] in b"-0123456789":
            end += 1
    try:
        value = json.loads(rest[:end])
    except ValueError:
        return None
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


# ---------------------------------------------------------------------------------------- lines


@dataclass(frozen=True, slots=True)
class _Oversized:
    head: bytes  # the first bytes, to find the id in
    size: int


class _BoundedLines:
    """Lines from a stream, never holding more than `limit` bytes of one: a longer line is
    skipped to its end and reported as `_Oversized`."""

    def __init__(self, reader: asyncio.StreamReader, limit: int) -> None:
        self._reader = reader
        self.limit = limit
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline

    async def next(self) -> bytes | _Oversized | None:
        head = b""
        skipped = -1  # >= 0 while skipping an oversized line
        while True:
            cut = self._buf.find(b"\n", self._scanned)
            if cut >= 0:
                line = bytes(self._buf[:cut])
                del self._buf[: cut + 1]
                self._scanned = 0
                return _Oversized(head, skipped + len(line)) if skipped >= 0 else line
            if skipped >= 0:
                skipped += len(self._buf)
                self._buf.clear()
            elif len(self._buf) > self.limit:
                head, skipped = bytes(self._buf[:_ID_SCAN_BYTES]), len(self._buf)
                self._buf.clear()
            self._scanned = len(self._buf)
            chunk = await self._reader.read(_CHUNK)
            if not chunk:  # EOF
                if skipped >= 0:
                    return _Oversized(head, skipped)
                if self._buf:
                    line = bytes(self._buf)
                    self._buf.clear()
                    return line
                return None
            self._buf += chunk


# ---------------------------------------------------------------------------------------- fds


class _Writer:
    """Whole lines to the wire; one `write` call per line, so concurrent lines never interleave."""

    def __init__(self, stream: asyncio.StreamWriter | None, fd: int) -> None:
        self._stream = stream
        self._fd = fd

    async def write_line(self, text: str) -> None:
        await self.write_bytes(text.encode("utf-8"))

    async def write_bytes(self, line: bytes) -> None:
        data = line + b"\n"
        if self._stream is not None:
            self._stream.write(data)
            await self._stream.drain()
        else:  # a regular file or something asyncio cannot watch: a blocking write in a thread
            await asyncio.to_thread(_write_all, self._fd, data)

    async def error(self, request_id: str | int | None, code: int, message: str) -> None:
        error = types.JSONRPCError(
            jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message)
        )
        await self.write_line(error.model_dump_json(by_alias=True, exclude_unset=True))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _watchable(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


async def _open_reader(fd: int, pipes: contextlib.ExitStack) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_CHUNK * 4)
    if _watchable(fd):
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0)
        )
        pipes.callback(transport.close)
        return reader

    async def feed() -> None:  # a regular file: read it in a thread (it never blocks for long)
        while chunk := await asyncio.to_thread(os.read, fd, _CHUNK):
            reader.feed_data(chunk)
        reader.feed_eof()

    task = asyncio.create_task(feed())
    reader._sidecar_feed = task  # type: ignore[attr-defined]  # keep a reference to the task
    return reader


async def _open_writer(fd: int, pipes: contextlib.ExitStack) -> _Writer:
    if not _watchable(fd):
        return _Writer(None, fd)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(fd, "wb", 0)
    )
    pipes.callback(transport.close)
    return _Writer(asyncio.StreamWriter(transport, protocol, None, loop), fd)


def _nothing() -> None:
    pass


def _claim_std_fds() -> tuple[int, int, Any]:
    """Private duplicates of fd 0 and 1 for the wire; fd 0 -> /dev/null, fd 1 -> stderr meanwhile.
    Returns the two wire fds and a function that puts everything back."""
    wire_in = os.dup(0)
    wire_out = os.dup(1)
    saved_in, saved_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    blocking = {fd: os.get_blocking(fd) for fd in (saved_in, saved_out)}

    def restore() -> None:
        # asyncio made the wire non-blocking, a flag of the open file that the parent shares (a
        # terminal, say): put it back through the saved duplicates of the same files.
        for fd, was in blocking.items():
            with contextlib.suppress(OSError):
                os.set_blocking(fd, was)
        for saved, target in ((saved_in, 0), (saved_out, 1)):
            with contextlib.suppress(OSError):
                os.dup2(saved, target)
                os.close(saved)

    return wire_in, wire_out, restore
