"""Which shared logs and caps a call touches: the core limiter's bucket mapping, for Redis.

One job: map a `Policy` and a call's `Demand`s to the sliding logs the Lua admission script
reads and the caps it checks, in exactly the order `core.ratelimit.RateLimiter` checks them (so
both name the same bucket when several are full). Pure: no I/O, no clock.

A log is identified by (scope, admission window, key). Two rules of one scope and window see the
same admissions in the core limiter (each has its own identical copy); here they share one log
and each is one check against it. Exchange logs may carry a lower cap learnt from Bybit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.core.policy import ExchangeBudget, Policy, RateScope
from sidecar.core.ratelimit import Demand, RateLimiter

__all__ = ["NS_PER_US", "BudgetPlan", "Check", "Log", "Resolved"]

NS_PER_US = 1000
NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Log:
    """One shared sliding log."""

    scope: RateScope
    key: str
    window_ns: int
    exchange: bool

    @property
    def window_us(self) -> int:
        return self.window_ns // NS_PER_US

    @property
    def name(self) -> str:
        return f"{self.scope.value}:{self.window_us}:{self.key}"


@dataclass(frozen=True, slots=True)
class Check:
    """`cost` units of `log` must fit under `cap` (one rule applied to one key)."""

    log: int  # index into Resolved.logs
    cap: int


@dataclass(frozen=True, slots=True)
class Resolved:
    logs: tuple[Log, ...]
    costs: tuple[int, ...]  # the call's units per log (every one > 0)
    checks: tuple[Check, ...]


class BudgetPlan:
    """The budgets of one policy: per scope, its rules (max, window) in order; per exchange key,
    Bybit's budget as the sidecar enforces it."""

    def __init__(self, policy: Policy) -> None:
        scoped: dict[RateScope, list[tuple[int, int]]] = {}
        for rule in policy.rate_rules:
            if rule.scope is RateScope.EXCHANGE:
                raise ValueError("exchange budgets are configured as ExchangeBudget, not RateRule")
            scoped.setdefault(rule.scope, []).append((rule.max, rule.window_ms * NS_PER_MS))
        self.scoped: dict[RateScope, tuple[tuple[int, int], ...]] = {s: tuple(r) for s, r in scoped.items()}
        # The core limiter's own tables (which budgets exist, which categories share one, the
        # order budgets are listed in): the plan follows them rather than repeating the rules.
        core = RateLimiter(policy)
        self.budgets: dict[str, ExchangeBudget] = core.exchange_budgets()
        self._listed = [(v.scope, v.key, v.window_ms * NS_PER_MS, v.max) for v in core.snapshot(0)]
        self.policy = policy

    def exchange_log(self, key: str) -> tuple[Log, int] | None:
        """The log of Bybit's budget `key` (op:category) and its configured share, if budgeted."""
        b = self.budgets.get(key)
        if b is None:
            return None
        return Log(RateScope.EXCHANGE, key, b.admission_window_ms * NS_PER_MS, exchange=True), b.local_max

    def resolve(self, demands: Iterable[Demand]) -> Resolved:
        """The logs a call touches (with its units in each) and the checks, in the core's order.

        Raises ValueError on a negative cost (a programming error, as in the core)."""
        index: dict[tuple[RateScope, int, str], int] = {}
        seen_checks: set[tuple[RateScope, int, str]] = set()
        logs: list[Log] = []
        costs: list[int] = []
        checks: list[Check] = []
        for scope, key, cost in demands:
            if cost <= 0:
                if cost < 0:
                    raise ValueError(f"negative cost {cost} for {scope} {key}")
                continue
            rules: tuple[tuple[int, int], ...]
            if scope is RateScope.EXCHANGE:
                found = self.exchange_log(key)
                rules = () if found is None else ((found[1], found[0].window_ns),)
            else:
                rules = self.scoped.get(scope, ())
            counted: set[int] = set()
            for rule_index, (cap, window_ns) in enumerate(rules):
                ident = (scope, window_ns, key)
                i = index.get(ident)
                if i is None:
                    i = index[ident] = len(logs)
                    logs.append(Log(scope, key, window_ns, exchange=scope is RateScope.EXCHANGE))
                    costs.append(0)
                if i not in counted:  # rules sharing a log count the demand once
                    counted.add(i)
                    costs[i] += cost
                if (scope, rule_index, key) not in seen_checks:  # first-seen order, as the core
                    seen_checks.add((scope, rule_index, key))
                    checks.append(Check(i, cap))
        return Resolved(tuple(logs), tuple(costs), tuple(checks))

    def view_logs(self) -> list[tuple[Log, int]]:
        """Every configured budget with its cap, as `RateLimiter.snapshot` lists them."""
        out: list[tuple[Log, int]] = []
        for scope, key, window_ns, cap in self._listed:
            if scope is RateScope.EXCHANGE:
                found = self.exchange_log(key)
                assert found is not None  # the snapshot lists only budgets the table holds
                out.append(found)
            else:
                out.append((Log(scope, key, window_ns, exchange=False), cap))
        return out
