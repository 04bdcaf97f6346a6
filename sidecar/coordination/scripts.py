"""The Lua scripts of the Redis backend: loaded from `lua/`, assembled, run by SHA.

One job: turn the `.lua` files into runnable scripts (clock + library + body) and run one with
EVALSHA, falling back to EVAL once when Redis does not know it yet (after a restart). It must not
interpret replies or catch errors: the adapter (`redis_backend.py`) does both.

The clock is one function, `clock()`, in `lua/clock.lua` (Redis's `TIME`). `build_scripts` takes
another clock source only so tests can drive the scripts on a time they choose (the property test
that holds the Lua limiter against the Python one); the service never passes one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

__all__ = ["REDIS_CLOCK", "Script", "Scripts", "build_scripts"]


def _read(name: str) -> str:
    return resources.files("sidecar.coordination").joinpath("lua", name).read_text(encoding="utf-8")


REDIS_CLOCK = _read("clock.lua")


class Script:
    """One assembled script, run by SHA (EVAL once if the server lost its script cache)."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()

    async def run(self, client: Redis, keys: list[str], args: list[str | int]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


@dataclass(frozen=True, slots=True)
class Scripts:
    admit: Script
    observe: Script
    views: Script
    release: Script
    events: Script
    set_state: Script
    hello: Script
    renew: Script


def build_scripts(clock: str = REDIS_CLOCK) -> Scripts:
    """Every script, each = `clock` + lua/lib.lua + its body."""
    lib = _read("lib.lua")

    def make(name: str) -> Script:
        return Script(name, f"{clock}\n{lib}\n{_read(name + '.lua')}")

    return Scripts(
        admit=make("admit"),
        observe=make("observe"),
        views=make("views"),
        release=make("release"),
        events=make("events"),
        set_state=make("set_state"),
        hello=make("hello"),
        renew=make("renew"),
    )
