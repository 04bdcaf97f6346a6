"""The Redis backend: budgets, kill switch, order leases, trip counters and ids shared by every
sidecar on one Bybit account.

One job: run the Lua scripts (`lua/`; one round trip per decision, on Redis's clock) and keep a
local view of the trading state fresh (pub/sub, plus a heartbeat that also re-registers after a
Redis restart). It must not decide anything itself (the scripts do), retry a decision beyond the
one retry on a pooled connection found dead (`_run`: same deadline; every script is safe to run
twice, at worst over-counting), or let a Redis failure escape: every failure or timeout becomes
`CoordinationUnavailable` within `timeout_ms` (redis-py's own retries are off: its defaults took
1.9 s to fail).

Every key lives under one hash tag, `{namespace}`, so a Redis Cluster keeps them in one slot. All
keys but the control state (the trading-state hash) carry a time to live. A call this side gave up
on may still run on Redis later: the admission script refuses to run after the caller's deadline
(in Redis's time, estimated from earlier replies), units it took before are over-counted (the safe
direction), and leases it took are released by this adapter once the deadline has passed, or
expire by their time to live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sidecar.bybit._ws import Backoff
from sidecar.clock import Clock
from sidecar.coordination.api import (
    COUNTED_EVENTS,
    Admitted,
    Busy,
    CoordinationUnavailable,
    Decision,
    Halted,
    Reducing,
    StateView,
    Throttled,
    UnavailableKind,
    budget_fingerprint,
    describe_url,
)
from sidecar.coordination.plan import NS_PER_US, BudgetPlan, Log
from sidecar.coordination.scripts import Scripts, build_scripts
from sidecar.core.inflight import reread_holder
from sidecar.core.policy import Policy
from sidecar.core.ratelimit import BudgetView, Demand, Throttle, budget_view, exchange_key, throttle_message
from sidecar.core.types import Category, TradingState

__all__ = ["RedisCoordinator", "describe_url"]

log = structlog.get_logger("coordination")

T = TypeVar("T")
NS_PER_MS = 1_000_000
_EVENT_NAME = re.compile(r"^[a-z0-9_.-]{1,64}$")
_MAX_MESSAGE_BYTES = 4096
_MAX_UNCERTAIN = 10_000
# The same sentence as lua/lib.lua's MISSING_REASON.
MISSING_STATE_REASON = (
    "the coordination state is missing (Redis lost it or was never initialised): "
    "trading stays halted until an operator resumes"
)
_UNKNOWN_VIEW = StateView(
    TradingState.HALTED,
    "the coordination state is not known yet (Redis not reached)",
    "",
    0,
    0,
    fresh=False,
    known=False,
)
# How long a clean stop may spend handing back the leases it still has to release.
_STOP_DRAIN_S = 0.3


@dataclass(frozen=True, slots=True)
class _LeaseOp:
    """A lease change asked for by synchronous code: release (`new_holder` '') or hand over."""

    holder: str
    new_holder: str
    orders: tuple[str, ...]
    ttl_ms: int


class _Keys:
    """Key names, all under the namespace's hash tag."""

    def __init__(self, namespace: str) -> None:
        if not namespace or any(c in namespace for c in "{} \t\r\n"):
            raise ValueError(f"bad coordination namespace {namespace!r}")
        tag = "{" + namespace + "}"
        self.tag = tag
        self.state = f"{tag}:state"
        self.clock = f"{tag}:clock"
        self.fleet = f"{tag}:fleet"
        self.fleet_fp = f"{tag}:fleet:fp"
        self.channel = f"{tag}:state-changed"

    def log(self, log: Log) -> list[str]:
        keys = [f"{self.tag}:rl:{log.name}", f"{self.tag}:rlm:{log.name}"]
        if log.exchange:
            keys.append(f"{self.tag}:rlcap:{log.name}")
        return keys

    def lease(self, order: str) -> str:
        return f"{self.tag}:lease:{order}"

    def events(self, name: str) -> list[str]:
        return [f"{self.tag}:ev:{name}", f"{self.tag}:evm:{name}"]


class RedisCoordinator:
    """`Coordinator` on a Redis server. Use `start()` before and `stop()` after."""

    def __init__(
        self,
        policy: Policy,
        *,
        url: str,
        namespace: str,
        clock: Clock,
        local_id_prefix: str,
        timeout_ms: int = 100,
        who: str = "sidecar",
        known_namespace: bool = False,
        seen_gen: str = "",
        seen_epoch: int = 0,
        heartbeat_s: float = 1.0,
        late_guard: bool = True,
        scripts: Scripts | None = None,
    ) -> None:
        """`known_namespace`: this instance has used the namespace before (e.g. its journal says
        so); a missing state then means "lost", never "first start". `seen_gen`/`seen_epoch`: the
        life and epoch of the state it last saw (from its journal), so a state that went back, or
        was re-created by a sidecar that did not know it, is caught at the first hello.
        `late_guard=False` drops the admission deadline (only for tests that set Redis's clock by
        hand); `scripts` likewise."""
        if timeout_ms < 1:
            raise ValueError("timeout_ms must be >= 1")
        self._keys = _Keys(namespace)
        self._where = describe_url(url)
        self._clock = clock
        self._timeout_s = timeout_ms / 1000
        self._timeout_ms = timeout_ms
        self._who = who
        self._known = known_namespace or bool(seen_gen)
        self._heartbeat_s = heartbeat_s
        self._late_guard = late_guard
        self._scripts = scripts if scripts is not None else build_scripts()
        self._plan = BudgetPlan(policy)
        self._fingerprint = budget_fingerprint(policy)
        self._client: Redis = Redis.from_url(
            url,
            socket_timeout=self._timeout_s,
            socket_connect_timeout=self._timeout_s,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            health_check_interval=0,
        )
        self._local_prefix = local_id_prefix
        self._instance = ""
        self._seq = 0
        self._view = _UNKNOWN_VIEW
        self._gen = ""
        # The life of the state this instance vouches for (from its hellos, or its journal), and the
        # latest epoch it saw in it: what the hello script judges a state that went back, or was
        # re-created by a sidecar that never knew it, against. A view of another life (pub/sub,
        # a read) does not change it: it asks for a hello at once instead.
        self._vouched_gen = seen_gen
        self._vouched_epoch = seen_epoch if seen_gen else 0
        self._healthy = False
        self._fleet_fp: str | None = None
        self._offset_us: int | None = None  # Redis's clock minus ours, from the last reply
        self._uncertain: deque[tuple[str, tuple[str, ...], int]] = deque(maxlen=_MAX_UNCERTAIN)
        # The leases this instance holds (holder -> orders, time to live), kept by `_keep_leases`,
        # and the lease changes synchronous code asked for, done there in order.
        self._held: dict[str, tuple[set[str], int]] = {}
        self._lease_ops: deque[_LeaseOp] = deque(maxlen=_MAX_UNCERTAIN)
        self._lease_wake = asyncio.Event()
        self._renewed_ns = 0
        self._wake = asyncio.Event()
        self._view_changed = asyncio.Event()  # set (and replaced) at every change of the view
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        return "redis"

    @property
    def available(self) -> bool:
        return self._healthy

    @property
    def instance_id(self) -> str:
        """This instance's fleet-unique id ('' until the first hello)."""
        return self._instance

    @property
    def known_namespace(self) -> bool:
        """True once this instance has seen the namespace initialised (persist it for restarts)."""
        return self._known

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def where(self) -> str:
        """host:port/db of the Redis server (never its password)."""
        return self._where

    @property
    def seen_state(self) -> tuple[str, int]:
        return self._vouched_gen, self._vouched_epoch

    @property
    def id_token(self) -> str:
        if not self._instance:
            return ""
        gen, _, n = self._instance.partition(".")
        return gen + n  # gen: 8 hex digits; n: the instance's number in that life (digits)

    async def start(self) -> None:
        await self._hello()
        self._tasks = [
            asyncio.create_task(self._maintain(), name="coordination.heartbeat"),
            asyncio.create_task(self._listen(), name="coordination.pubsub"),
            asyncio.create_task(self._keep_leases(), name="coordination.leases"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._lease_wake.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tasks and self._lease_ops:
            # Hand back what settled requests released (others would see ORDER_BUSY until the
            # leases expire); bounded, and whatever is left expires by its time to live.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_STOP_DRAIN_S):
                    await self._apply_lease_ops()
        self._tasks = []
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()

    def next_request_id(self) -> str:
        self._seq += 1
        prefix = f"c{self._instance}" if self._instance else self._local_prefix
        return f"{prefix}-{self._seq}"

    # -- one round trip -----------------------------------------------------------------------

    async def _run(self, what: str, call: Callable[[], Awaitable[T]]) -> T | CoordinationUnavailable:
        """Run one Redis call within the timeout; any failure becomes CoordinationUnavailable.

        One exception to "no retry": a connection found dead (Redis restarted since it was pooled)
        is dropped with the other idle ones and the call is made once more on a fresh connection,
        within the same timeout. Every script is safe to run twice (at worst it over-counts)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                try:
                    result = await call()
                except (RedisConnectionError, OSError):
                    await self._drop_idle_connections()
                    result = await call()
            _raise_if_cancelled()
        except (TimeoutError, RedisTimeoutError):
            return self._failed(
                UnavailableKind.TIMEOUT, what, f"did not answer within {self._timeout_ms} ms", "timeout"
            )
        except (RedisConnectionError, OSError) as exc:
            await self._drop_idle_connections()
            return self._failed(UnavailableKind.UNREACHABLE, what, "cannot be reached", type(exc).__name__)
        except RedisError as exc:
            return self._failed(
                UnavailableKind.ERROR, what, "answered with an error", f"{type(exc).__name__}: {exc}"
            )
        if not self._healthy:
            self._healthy = True
            log.info("coordination.available", where=self._where)
        return result

    async def _drop_idle_connections(self) -> None:
        """After a connection error the idle connections are most likely dead too (a restart):
        drop them, so the next call opens a fresh one instead of failing on the next stale one."""
        with contextlib.suppress(RedisError, OSError):
            await self._client.connection_pool.disconnect(inuse_connections=False)

    def _failed(self, kind: UnavailableKind, what: str, how: str, detail: str) -> CoordinationUnavailable:
        if self._healthy:
            log.warning("coordination.unavailable", where=self._where, kind=str(kind), op=what, error=detail)
        self._healthy = False
        return CoordinationUnavailable(
            kind, f"the coordination store (Redis at {self._where}) {how}: nothing was sent"
        )

    def _bad_reply(self, what: str, reply: object) -> CoordinationUnavailable:
        log.error("coordination.bad_reply", op=what, reply=repr(reply)[:200])
        return CoordinationUnavailable(
            UnavailableKind.ERROR,
            f"the coordination store answered {what} in an unexpected shape: nothing was sent",
        )

    def _now_us(self) -> int:
        return self._clock.monotonic_ns() // NS_PER_US

    def _learn_offset(self, redis_now_us: int, sent_us: int) -> None:
        self._offset_us = redis_now_us - (sent_us + self._now_us()) // 2

    # -- decisions ----------------------------------------------------------------------------

    async def admit(
        self,
        demands: Sequence[Demand],
        orders: Sequence[str],
        holder: str,
        *,
        validated_under: TradingState,
        lease_ttl_ms: int,
    ) -> Decision:
        if not holder:
            raise ValueError("admit needs a holder (the request id)")
        if lease_ttl_ms < 1:
            raise ValueError("lease_ttl_ms must be >= 1")
        return await self._decide(demands, orders, holder, validated_under, lease_ttl_ms)

    async def preview(
        self, demands: Sequence[Demand], orders: Sequence[str], *, validated_under: TradingState
    ) -> Decision:
        return await self._decide(demands, orders, "", validated_under, None)

    async def _decide(
        self,
        demands: Sequence[Demand],
        orders: Sequence[str],
        holder: str,
        validated_under: TradingState,
        lease_ttl_ms: int | None,
    ) -> Decision:
        resolved = self._plan.resolve(demands)
        orders = tuple(dict.fromkeys(orders))
        committing = lease_ttl_ms is not None
        sent_us = self._now_us()
        deadline_us = 0
        if committing and self._late_guard and self._offset_us is not None:
            # Refused by the script if it runs after this (the call has been given up on by then).
            deadline_us = sent_us + self._offset_us + 2 * self._timeout_ms * 1000
        keys = [self._keys.state, self._keys.clock, self._keys.fleet_fp]
        args: list[str | int] = [
            "admit" if committing else "peek",
            str(validated_under),
            self._fingerprint,
            holder,
            lease_ttl_ms or 0,
            deadline_us,
            len(resolved.logs),
            len(resolved.checks),
            len(orders),
        ]
        for lg, cost in zip(resolved.logs, resolved.costs, strict=True):
            keys += self._keys.log(lg)
            args += [lg.window_us, cost, 1 if lg.exchange else 0]
        for check in resolved.checks:
            args += [check.log + 1, check.cap]
        keys += [self._keys.lease(o) for o in orders]

        script = self._scripts.admit
        # A call given up on (timed out, or its caller cancelled) may still run: release its
        # leases once it no longer can (its deadline, plus a second).
        after_ns = (sent_us + 2 * self._timeout_ms * 1000) * NS_PER_US + 1_000 * NS_PER_MS
        try:
            reply = await self._run("admit", lambda: script.run(self._client, keys, args))
        except asyncio.CancelledError:
            if committing and orders:
                self._uncertain.append((holder, tuple(orders), after_ns))
            raise
        if isinstance(reply, CoordinationUnavailable):
            if committing and orders and reply.kind is not UnavailableKind.UNREACHABLE:
                self._uncertain.append((holder, tuple(orders), after_ns))
            return reply
        try:
            kind, now_us = reply[0], int(reply[1])
            self._learn_offset(now_us, sent_us)
            if kind == "ok":
                if committing and orders:
                    assert lease_ttl_ms is not None
                    self._track(holder, orders, lease_ttl_ms)
                return Admitted(orders if committing else (), TradingState(reply[2]))
            if kind == "throttled":
                check = resolved.checks[int(reply[2]) - 1]
                lg = resolved.logs[check.log]
                retry_us = int(reply[3])
                retry_ns = None if retry_us < 0 else retry_us * NS_PER_US
                cost, cap, used = int(reply[4]), int(reply[5]), int(reply[6])
                message = throttle_message(
                    lg.scope, lg.key, cost, cap, lg.window_ns, retry_ns, used, blocked=int(reply[7]) == 1
                )
                return Throttled(Throttle(lg.scope, lg.key, cost, cap, lg.window_ns, retry_ns, message))
            if kind == "busy":
                return Busy(tuple(orders[int(i) - 1] for i in reply[2:]))
            if kind == "halted":
                return Halted(str(reply[2]), str(reply[3]))
            if kind == "reducing":
                return Reducing(str(reply[2]))
            if kind == "mismatch":
                fleet = str(reply[2])
                theirs = f"fingerprint {fleet}" if fleet else "several different fingerprints"
                return CoordinationUnavailable(
                    UnavailableKind.POLICY_MISMATCH,
                    f"this sidecar's rate budgets (fingerprint {self._fingerprint}) differ from those of the "
                    f"other sidecars on this account ({theirs}): give every sidecar the same rate_limits "
                    "and reload; nothing was sent",
                )
            if kind == "unregistered":
                self._wake.set()  # say hello now rather than at the next heartbeat
                return CoordinationUnavailable(
                    UnavailableKind.NOT_READY,
                    "this sidecar has not registered with the coordination store yet: nothing was sent",
                )
            if kind == "expired":
                return CoordinationUnavailable(
                    UnavailableKind.TIMEOUT,
                    "the coordination store ran the decision too late (after this sidecar gave up): "
                    "nothing was sent",
                )
        except (ValueError, TypeError, IndexError):
            pass
        return self._bad_reply("admit", reply)

    def admit_now(
        self, demands: Sequence[Demand], orders: Sequence[str], holder: str, *, validated_under: TradingState
    ) -> Decision | None:
        return None  # every decision is the shared store's

    def preview_now(
        self, demands: Sequence[Demand], orders: Sequence[str], *, validated_under: TradingState
    ) -> Decision | None:
        return None

    async def release(self, holder: str, orders: Sequence[str]) -> int | CoordinationUnavailable:
        wanted = list(dict.fromkeys(orders))
        self._untrack(holder, wanted)
        return await self._hand_over(holder, "", wanted, 0)

    async def move_to_reread(
        self, holder: str, order_id: str, lease_ttl_ms: int
    ) -> bool | CoordinationUnavailable:
        self._untrack(holder, [order_id])
        moved = await self._hand_over(holder, reread_holder(order_id), [order_id], lease_ttl_ms)
        if moved == 1:
            self._track(reread_holder(order_id), [order_id], lease_ttl_ms)
        return moved if isinstance(moved, CoordinationUnavailable) else moved == 1

    def release_later(self, holder: str, orders: Sequence[str]) -> None:
        wanted = tuple(dict.fromkeys(orders))
        if wanted:
            self._untrack(holder, wanted)
            self._lease_ops.append(_LeaseOp(holder, "", wanted, 0))
            self._lease_wake.set()

    def reread_later(self, holder: str, order_id: str, lease_ttl_ms: int) -> None:
        if lease_ttl_ms < 1:
            raise ValueError("lease_ttl_ms must be >= 1")
        self._untrack(holder, [order_id])
        self._track(reread_holder(order_id), [order_id], lease_ttl_ms)
        self._lease_ops.append(_LeaseOp(holder, reread_holder(order_id), (order_id,), lease_ttl_ms))
        self._lease_wake.set()

    def adopt_later(self, holder: str, orders: Sequence[str], lease_ttl_ms: int) -> None:
        if lease_ttl_ms < 1:
            raise ValueError("lease_ttl_ms must be >= 1")
        if orders:
            self._track(holder, list(dict.fromkeys(orders)), lease_ttl_ms)
            self._renewed_ns = 0  # hold them at the next turn of the lease loop, not a heartbeat later
            self._lease_wake.set()

    def held_leases(self) -> dict[str, frozenset[str]]:
        """The leases this instance holds now, by holder (what its heartbeat keeps)."""
        return {h: frozenset(orders) for h, (orders, _) in self._held.items()}

    def _track(self, holder: str, orders: Sequence[str], ttl_ms: int) -> None:
        mine, _ = self._held.get(holder, (set(), ttl_ms))
        mine.update(orders)
        self._held[holder] = (mine, ttl_ms)

    def _untrack(self, holder: str, orders: Sequence[str]) -> None:
        entry = self._held.get(holder)
        if entry is None:
            return
        entry[0].difference_update(orders)
        if not entry[0]:
            del self._held[holder]

    async def _keep_leases(self) -> None:
        """Apply the lease changes asked for (in order; retried while Redis is unreachable), and
        once a heartbeat hold every lease this instance still has for another time to live."""
        while not self._stopping:
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._heartbeat_s):
                        await self._lease_wake.wait()
                self._lease_wake.clear()
                if not await self._apply_lease_ops():
                    continue  # Redis unreachable: the heartbeat wakes this loop again
                if self._clock.monotonic_ns() - self._renewed_ns >= self._heartbeat_s * 1e9:
                    await self._renew()
            except asyncio.CancelledError:
                raise
            except Exception:  # a supervisor: the loop must survive anything
                log.exception("coordination.leases_failed")

    async def _apply_lease_ops(self) -> bool:
        while self._lease_ops:
            op = self._lease_ops[0]
            done = await self._hand_over(op.holder, op.new_holder, list(op.orders), op.ttl_ms)
            if isinstance(done, CoordinationUnavailable):
                return False
            if self._lease_ops and self._lease_ops[0] is op:
                self._lease_ops.popleft()
        return True

    async def _renew(self) -> None:
        pairs = [(order, holder, ttl) for holder, (orders, ttl) in self._held.items() for order in orders]
        if not pairs:
            self._renewed_ns = self._clock.monotonic_ns()
            return
        ttl_ms = max(ttl for _, _, ttl in pairs)
        keys = [self._keys.lease(order) for order, _, _ in pairs]
        args: list[str | int] = [ttl_ms, *(holder for _, holder, _ in pairs)]
        script = self._scripts.renew
        reply = await self._run("renew", lambda: script.run(self._client, keys, args))
        if isinstance(reply, CoordinationUnavailable):
            return
        self._renewed_ns = self._clock.monotonic_ns()
        try:
            taken = [pairs[int(i) - 1] for i in reply[1:]]
        except (ValueError, TypeError, IndexError):
            self._bad_reply("renew", reply)
            return
        for order, holder, _ in taken:
            # Expired while this instance could not renew it, and taken by another sidecar since.
            log.error("coordination.lease_taken", order_id=order, holder=holder)

    async def _hand_over(
        self, holder: str, new_holder: str, orders: list[str], ttl_ms: int
    ) -> int | CoordinationUnavailable:
        if not orders:
            return 0
        keys = [self._keys.lease(o) for o in orders]
        script = self._scripts.release
        reply = await self._run(
            "release", lambda: script.run(self._client, keys, [holder, new_holder, ttl_ms])
        )
        if isinstance(reply, CoordinationUnavailable):
            return reply
        if not isinstance(reply, int):
            return self._bad_reply("release", reply)
        return reply

    # -- Bybit's view of its budget -----------------------------------------------------------

    async def observe_exchange_budget(  # noqa: PLR0917  # the Coordinator signature
        self, op: str, category: Category, limit: int, remaining: int, reset_ms: int | None, wall_now_ms: int
    ) -> bool | CoordinationUnavailable:
        key = exchange_key(op, category)
        found = self._plan.exchange_log(key)
        budget = self._plan.budgets.get(key)
        if found is None or budget is None or limit < 1 or remaining < 0:
            return False
        usable = max(1, int(limit * budget.utilization))
        wait_us = (reset_ms - wall_now_ms) * 1000 if reset_ms is not None and reset_ms > wall_now_ms else 0
        return await self._observe(found, "headers", limit, remaining, usable, wait_us)

    async def on_exchange_rate_limited(
        self, op: str, category: Category, reset_ms: int | None, wall_now_ms: int
    ) -> bool | CoordinationUnavailable:
        found = self._plan.exchange_log(exchange_key(op, category))
        if found is None:
            return False
        wait_us = (reset_ms - wall_now_ms) * 1000 if reset_ms is not None and reset_ms > wall_now_ms else 0
        return await self._observe(found, "rate_limited", 0, 0, 0, wait_us)

    async def _observe(  # noqa: PLR0917  # the script's arguments, in order
        self, found: tuple[Log, int], kind: str, limit: int, remaining: int, usable: int, wait_us: int
    ) -> bool | CoordinationUnavailable:
        lg, max_units = found
        keys = [self._keys.clock, *self._keys.log(lg)]
        args: list[str | int] = [kind, max_units, lg.window_us, limit, remaining, usable, wait_us]
        script = self._scripts.observe
        reply = await self._run("observe", lambda: script.run(self._client, keys, args))
        if isinstance(reply, CoordinationUnavailable):
            return reply
        try:
            return int(reply[0]) == 1
        except (ValueError, TypeError, IndexError):
            return self._bad_reply("observe", reply)

    async def budgets(self) -> list[BudgetView] | CoordinationUnavailable:
        logs = self._plan.view_logs()
        keys = [self._keys.clock]
        args: list[str | int] = [len(logs)]
        for lg, cap in logs:
            keys += self._keys.log(lg)
            args += [lg.window_us, cap, 1 if lg.exchange else 0]
        script = self._scripts.views
        reply = await self._run("views", lambda: script.run(self._client, keys, args))
        if isinstance(reply, CoordinationUnavailable):
            return reply
        try:
            now_ns = int(reply[0]) * NS_PER_US
            out: list[BudgetView] = []
            for i, (lg, _) in enumerate(logs):
                cap, used, ready_us = (int(v) for v in reply[1 + 3 * i : 4 + 3 * i])
                ready_ns = None if ready_us < 0 else ready_us * NS_PER_US
                out.append(budget_view(lg.scope, lg.key, cap, lg.window_ns, used, ready_ns, now_ns))
            return out
        except (ValueError, TypeError, IndexError):
            return self._bad_reply("views", reply)

    async def replace_policy(self, policy: Policy) -> None:
        self._plan = BudgetPlan(policy)
        self._fingerprint = budget_fingerprint(policy)
        await self._hello()  # announce the new fingerprint now

    # -- trip counters ------------------------------------------------------------------------

    async def count_event(self, name: str, window_ms: int, *, add: int = 1) -> int | CoordinationUnavailable:
        if not _EVENT_NAME.match(name) or window_ms < 1 or add < 0:
            raise ValueError("count_event needs a name [a-z0-9_.-]{1,64}, window_ms >= 1 and add >= 0")
        keys = [self._keys.clock, *self._keys.events(name)]
        script = self._scripts.events
        reply = await self._run("events", lambda: script.run(self._client, keys, [window_ms * 1000, add]))
        if isinstance(reply, CoordinationUnavailable):
            return reply
        try:
            return int(reply[0])
        except (ValueError, TypeError, IndexError):
            return self._bad_reply("events", reply)

    # -- the kill switch ----------------------------------------------------------------------

    def trading_state(self) -> StateView:
        view = self._view
        if view.fresh != self._healthy:
            view = StateView(
                view.state, view.reason, view.who, view.epoch, view.updated_ms, fresh=self._healthy
            )
        return view

    async def set_trading_state(
        self, state: TradingState, reason: str, who: str
    ) -> StateView | CoordinationUnavailable:
        return await self._write_state(state, reason, who, "set")

    async def trip(self, state: TradingState, reason: str) -> StateView | CoordinationUnavailable:
        return await self._write_state(state, reason, "sidecar", "escalate")

    async def _write_state(
        self, state: TradingState, reason: str, who: str, mode: str
    ) -> StateView | CoordinationUnavailable:
        args: list[str | int] = [str(state), reason, who, _gen_token(), self._keys.channel, mode]
        keys = [self._keys.state]
        if mode == "set" and state is TradingState.ACTIVE:  # a resume: the trip counters start again
            keys += [key for name in COUNTED_EVENTS for key in self._keys.events(name)]
        script = self._scripts.set_state
        reply = await self._run("set_state", lambda: script.run(self._client, keys, args))
        if isinstance(reply, CoordinationUnavailable):
            return reply
        try:
            self._vouch(reply[6], reply[4])  # this instance wrote it: it vouches for this life
            self._learn(*reply[1:7])
            if int(reply[0]) == 1:
                log.warning("coordination.state_set", state=str(state), reason=reason, who=who, mode=mode)
            return self.trading_state()
        except (ValueError, TypeError, IndexError):
            return self._bad_reply("set_state", reply)

    def _vouch(self, gen: object, epoch: object) -> None:
        self._vouched_gen, self._vouched_epoch = str(gen), int(str(epoch))

    def _learn(  # noqa: PLR0917  # the fields of the state hash, in order
        self, state: object, reason: object, who: object, epoch: object, ts_ms: object, gen: object
    ) -> None:
        """Take a state seen on Redis into the local view, unless it is older than the view."""
        gen_s, epoch_i = str(gen), int(str(epoch))
        value = TradingState(str(state))
        if gen_s == self._vouched_gen:
            self._vouched_epoch = max(self._vouched_epoch, epoch_i)
        elif self._vouched_gen:
            self._wake.set()  # another life of the state: let the hello script judge it now
        if gen_s == self._gen and epoch_i < self._view.epoch:
            return
        changed = value is not self._view.state or gen_s != self._gen
        self._gen = gen_s
        self._view = StateView(value, str(reason), str(who), epoch_i, int(str(ts_ms)))
        if changed:
            log.info("coordination.state_seen", state=str(value), reason=str(reason), epoch=epoch_i)
            changed_event, self._view_changed = self._view_changed, asyncio.Event()
            changed_event.set()

    async def wait_for_state(self, state: TradingState, timeout_s: float) -> bool:
        """Wait until this instance's view shows `state` (pub/sub or heartbeat); False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._view.state is not state:
                    await self._view_changed.wait()
        except TimeoutError:
            return False
        return True

    # -- background: heartbeat and pub/sub ----------------------------------------------------

    async def _hello(self) -> bool:
        args: list[str | int] = [
            self._instance,
            self._fingerprint,
            0 if self._known else 1,
            _gen_token(),
            self._who,
            int(5 * self._heartbeat_s * 1_000_000),
            self._keys.channel,
            self._vouched_gen,
            self._vouched_epoch,
        ]
        keys = [self._keys.state, self._keys.fleet, self._keys.fleet_fp]
        script = self._scripts.hello
        sent_us = self._now_us()
        reply = await self._run("hello", lambda: script.run(self._client, keys, args))
        if isinstance(reply, CoordinationUnavailable):
            return False
        try:
            self._instance = str(reply[0])
            self._vouch(reply[6], reply[4])  # the hello script has judged this life
            self._learn(*reply[1:7])
            self._fleet_fp = str(reply[7])
            event = str(reply[8])
            self._learn_offset(int(reply[9]), sent_us)
        except (ValueError, TypeError, IndexError):
            self._bad_reply("hello", reply)
            return False
        if event:
            log.warning("coordination.state_" + event, state=str(self._view.state), reason=self._view.reason)
        self._known = True
        return True

    async def _maintain(self) -> None:
        """Heartbeat: say hello every `heartbeat_s` (re-registers after a restart, refreshes the
        view, detects lost or rolled-back state), and release leases of calls that may have run."""
        backoff = Backoff(initial_s=0.1, max_s=1.0, factor=2.0, jitter_s=0.05)
        ok = bool(self._instance)  # start() said hello already
        while not self._stopping:
            try:
                delay_s = self._heartbeat_s if ok else backoff.next_s()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay_s):
                        await self._wake.wait()
                self._wake.clear()  # before the hello: a wake-up asked for during it is kept
                ok = await self._hello()
                if ok:
                    backoff.reset()
                    await self._release_uncertain()
                    if self._lease_ops:
                        self._lease_wake.set()  # Redis answers again: apply what is waiting
            except asyncio.CancelledError:
                raise
            except Exception:  # a supervisor: the loop must survive anything
                log.exception("coordination.heartbeat_failed")
                await asyncio.sleep(self._heartbeat_s)

    async def _release_uncertain(self) -> None:
        now_ns = self._clock.monotonic_ns()
        while self._uncertain and self._uncertain[0][2] <= now_ns:
            holder, orders, _ = self._uncertain[0]
            if isinstance(await self.release(holder, orders), CoordinationUnavailable):
                return  # keep it for the next heartbeat
            self._uncertain.popleft()

    async def _listen(self) -> None:
        """Pub/sub: every state change reaches this instance's view within milliseconds."""
        backoff = Backoff(initial_s=0.1, max_s=1.0, factor=2.0, jitter_s=0.05)
        while not self._stopping:
            pubsub: PubSub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._keys.channel)
                await self._refresh_view()  # changes made while we were not subscribed
                backoff.reset()
                while not self._stopping:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    _raise_if_cancelled()
                    if message is not None:
                        self._on_message(message.get("data"))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                log.info("coordination.pubsub_lost", error=type(exc).__name__)
            except Exception:
                log.exception("coordination.pubsub_failed")
            finally:
                with contextlib.suppress(RedisError, OSError, TimeoutError, RuntimeError):
                    await asyncio.shield(pubsub.aclose())
            await asyncio.sleep(backoff.next_s())

    async def _refresh_view(self) -> None:
        await self.read_trading_state()

    async def read_trading_state(self) -> StateView | CoordinationUnavailable:
        """The state as Redis holds it now (one read; no registration, so operator commands can use
        it without start()). A missing state reads as halted, as the admission script treats it."""
        fields = ("state", "reason", "who", "epoch", "ts_ms", "gen")
        reply = await self._run("read_state", lambda: self._client.hmget(self._keys.state, list(fields)))
        if isinstance(reply, CoordinationUnavailable):
            return reply
        if not reply or reply[0] is None:
            return StateView(TradingState.HALTED, MISSING_STATE_REASON, "", 0, 0)
        try:
            self._learn(*(v if v is not None else "" for v in reply))
        except (ValueError, TypeError):
            return self._bad_reply("read_state", reply)
        return self.trading_state()

    def _on_message(self, data: Any) -> None:
        if not isinstance(data, str) or len(data) > _MAX_MESSAGE_BYTES:
            return
        try:
            msg = json.loads(data)
            self._learn(msg["state"], msg["reason"], msg["who"], msg["epoch"], msg["tsMs"], msg["gen"])
        except (ValueError, TypeError, KeyError):
            log.warning("coordination.bad_message", size=len(data))


def _raise_if_cancelled() -> None:
    """Deliver a cancellation that arrived while a redis-py call was finishing.

    redis-py 8 can complete a command although the task was cancelled during it (the request is
    left pending, `cancelling() > 0`, with no CancelledError): without this, a cancelled caller
    would go on, and the background loops would not stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _gen_token() -> str:
    """A random name for a new life of the state hash (used only if the script creates it)."""
    return os.urandom(4).hex()
