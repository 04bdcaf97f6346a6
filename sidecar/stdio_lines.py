"""Standard input as MCP lines that a stop can end: the stdio transport's reader.

The MCP SDK reads stdin in an anyio worker thread. A blocked `readline` cannot be cancelled, so a
stdio server whose client keeps stdin open ignored SIGINT/SIGTERM until the client wrote a line or
closed the pipe, and systemd/docker/terminal stops ended in SIGKILL. Here a daemon thread of our own
does the blocking reads and hands lines to the event loop through a small bounded queue; the loop
side can be cancelled at any time, and `close()` ends the stream (the SDK then sees end of input).
The thread is abandoned, never joined: it holds no state and dies with the process. It reads the
file descriptor with `os.read`, never through `sys.stdin.buffer`: a thread blocked inside a
BufferedReader holds its lock, and the interpreter aborts when it finds that lock taken at exit.

This module only moves lines. It must not parse MCP messages or know about tools or the service.
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import AsyncIterator

import anyio

__all__ = ["MAX_LINE_BYTES", "StdinLines"]

# One JSON-RPC message per line; an amend batch is a few KiB. A longer line is cut off and replaced
# by a marker that is not JSON, so the SDK answers it with a parse error instead of holding it all.
MAX_LINE_BYTES = 4 * 1024 * 1024
_OVERSIZED = "<line longer than 4 MiB dropped>\n"
# Lines waiting for the server: back-pressure on a client that writes faster than it is served.
_QUEUE_LINES = 16
# How often a reader thread waiting on a full queue checks whether the stream was closed.
_PUT_RETRY_S = 0.5
_READ_BYTES = 64 * 1024


class StdinLines(anyio.AsyncFile[str]):
    """An `anyio.AsyncFile[str]` over a file descriptor, read by a daemon thread (see module doc).

    Pass it as `stdin=` to `mcp.server.stdio.stdio_server`. `pause()` stops handing lines over (a
    stopping server lets the calls in flight finish first), `close()` ends the iteration at once,
    even while the thread is blocked in a read.
    """

    def __init__(self, fd: int = 0) -> None:
        super().__init__(io.StringIO())  # AsyncFile wants a file; every read goes through __aiter__
        self._fd = fd
        self._queue: asyncio.Queue[str | None] | None = None
        self._closed = threading.Event()
        self._paused = False
        # Lines handed over but not yet taken: the thread waits for a slot (back-pressure).
        self._slots = threading.BoundedSemaphore(_QUEUE_LINES)
        self._thread: threading.Thread | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        queue = self._start()
        while not self._closed.is_set():
            line = await queue.get()
            if line is not None:
                self._slots.release()
            if line is None or self._closed.is_set():
                return
            if self._paused:
                continue  # read but never served: the client sees the connection end instead
            yield line

    def _start(self) -> asyncio.Queue[str | None]:
        if self._queue is None:
            self._queue = asyncio.Queue()  # bounded by the slots
            loop = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=self._read, args=(loop, self._queue), name="sidecar-stdin", daemon=True
            )
            self._thread.start()
        return self._queue

    def pause(self) -> None:
        """Serve no further line (those already handed over are being served)."""
        self._paused = True

    def close(self) -> None:
        """End the stream now: the iterator returns, and the thread stops at its next line."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._queue is not None:
            self._queue.put_nowait(None)  # wake a waiting iterator

    async def aclose(self) -> None:
        self.close()

    def _read(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
        """The thread: blocking reads split into lines (linear in the input, at most MAX_LINE_BYTES
        held), each handed over with back-pressure; None at end of input (a last line without a
        newline is still delivered)."""
        partial = bytearray()  # the start of a line whose newline has not arrived yet
        dropping = False  # inside a line already reported as too long: skip to its newline
        try:
            while not self._closed.is_set():
                chunk = os.read(self._fd, _READ_BYTES)
                if not chunk:
                    break
                start = 0
                while (cut := chunk.find(b"\n", start)) >= 0:
                    piece = chunk[start : cut + 1]
                    start = cut + 1
                    if dropping:
                        dropping = False
                        continue
                    if len(partial) + len(piece) > MAX_LINE_BYTES:
                        line = _OVERSIZED
                    else:
                        line = _decode(bytes(partial) + piece)
                    partial.clear()
                    if not self._put(loop, queue, line):
                        return
                if dropping:
                    continue
                partial += chunk[start:]
                if len(partial) > MAX_LINE_BYTES:
                    partial.clear()
                    dropping = True
                    if not self._put(loop, queue, _OVERSIZED):
                        return
            if partial and not dropping and not self._put(loop, queue, _decode(bytes(partial))):
                return
        except OSError:  # stdin closed or broken under us: same as end of input
            pass
        self._put(loop, queue, None)

    def _put(
        self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None], line: str | None
    ) -> bool:
        """Hand `line` to the loop once a slot is free (back-pressure); False once closed or the
        loop is gone. The end-of-input marker (None) never waits for a slot."""
        if line is not None:
            while not self._slots.acquire(timeout=_PUT_RETRY_S):
                if self._closed.is_set() or loop.is_closed():
                    return False
        try:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        except RuntimeError:  # the loop is closed: nobody reads any more
            return False
        return True


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
