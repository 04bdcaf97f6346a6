"""The layering of DESIGN.md §2 and the parts added since, enforced by reading every module's AST.

One table (`ALLOWED`) says which parts of `sidecar` each part may import (an import may only point
down: core ← config, bybit codec/models ← adapters ← journal ← service ← mcp_server, transports,
cli). Beside it: core imports only the stdlib; the emulator imports nothing of the sidecar but
itself; product code never imports `sidecar.testing`, and reaches the emulator only lazily (inside
a function: the sim path); there are no import cycles between modules (function-level imports
count; `if TYPE_CHECKING:` blocks do not); only sidecar/clock.py reads time; only sidecar/env.py
reads the environment. A failure names the importing file:line and what it imports.
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "sidecar"

# part -> the parts it may import besides itself. A part is a top-level module of `sidecar`
# (`sidecar/clock.py` is "clock") or a sub-package ("core", "bybit", "journal", ...); "sidecar" is
# the package's own __init__ (the version). Third-party libraries are free except where noted.
ALLOWED: dict[str, frozenset[str]] = {
    k: frozenset(v)
    for k, v in {
        # leaves: every layer may use them
        "sidecar": set(),
        "errors": set(),
        "clock": set(),
        "logs": set(),
        "packaged": set(),
        "env": {"errors", "emulator"},  # the emulator's test keys, lazily, for sim runs only
        # the pure core and what compiles to it
        "core": set(),
        "config": {"core", "errors"},
        "results": {"core"},
        "observer": {"results"},
        # adapters: the exchange, shared coordination, host-level process state
        "bybit": {"core", "clock", "errors", "logs"},
        "coordination": {"core", "clock", "config", "bybit", "errors", "logs"},
        "runtime_lock": {"errors"},
        "host_registry": {"runtime_lock"},
        # the journal, and what reads or writes it beside the service
        "journal": {"core", "errors", "logs", "results"},
        "presence": {"clock", "journal", "runtime_lock"},
        # the service: a package of small parts (their own arrows: SERVICE_ARROWS)
        "service": {
            "bybit",
            "clock",
            "config",
            "coordination",
            "core",
            "env",
            "errors",
            "journal",
            "logs",
            "observer",
            "results",
        },
        "reload": {"config", "errors"},
        # on top of the service: tools, transports, health, the exchange probe, the CLI
        "mcp_server": {"sidecar", "core", "errors", "results", "service"},
        "metrics": {"sidecar", "core", "errors", "logs", "results", "service"},
        "http_guard": {"clock", "logs"},
        "http_transport": {"config", "env", "errors", "http_guard", "logs"},
        "stdio_transport": {"clock", "logs"},
        "probe": {"bybit", "clock", "config", "core", "emulator", "env", "errors", "logs"},
        "cli": {
            "sidecar",
            "bybit",
            "clock",
            "config",
            "coordination",
            "core",
            "emulator",
            "env",
            "errors",
            "host_registry",
            "http_transport",
            "journal",
            "logs",
            "mcp_server",
            "metrics",
            "packaged",
            "presence",
            "probe",
            "reload",
            "runtime_lock",
            "service",
            "stdio_transport",
        },
        "__main__": {"cli"},
        # the emulator is an independent witness: nothing of the sidecar but itself
        "emulator": set(),
        # the test kit may use anything; nothing in the product may use it (PRODUCT below)
        "testing": {
            "bybit",
            "cli",
            "clock",
            "config",
            "core",
            "emulator",
            "env",
            "errors",
            "journal",
            "logs",
            "service",
        },
    }.items()
}
TEST_KIT = "testing"
PRODUCT = frozenset(ALLOWED) - {TEST_KIT}

# Inside the service package: an arrow means "may be imported by". Each module may import the ones
# listed (and anything outside the package its part row allows). Values and pure parts at the bottom,
# the parts that run tasks above them, the facade on top.
SERVICE_ARROWS: dict[str, frozenset[str]] = {
    k: frozenset(v)
    for k, v in {
        "api": set(),
        "entries": set(),
        "ports": set(),
        "tasks": set(),
        "views": set(),
        "admission": set(),
        "coordination_link": set(),
        "recorder": set(),
        "answers": {"api", "entries", "admission"},
        "safety": {"recorder", "tasks", "coordination_link"},
        "pending": {"api", "entries", "answers", "admission", "recorder"},
        "recovery": {"entries", "admission", "recorder", "pending"},
        "upkeep": {"entries", "recorder", "safety"},
        "intake": {"entries", "views", "admission", "recorder", "tasks", "safety", "pending", "ports"},
        "pipeline": {"api", "entries", "answers", "admission", "recorder", "safety", "pending", "ports"},
        "runtime": {"ports", "tasks"},
        "facade": {
            "api",
            "entries",
            "views",
            "answers",
            "admission",
            "coordination_link",
            "recorder",
            "tasks",
            "safety",
            "pending",
            "recovery",
            "upkeep",
            "intake",
            "pipeline",
            "ports",
            "runtime",
        },
        "__init__": {"api", "facade", "views"},
    }.items()
}
# Pure parts of the service: no asyncio, no I/O.
SERVICE_PURE = frozenset({"api", "answers", "views"})  # entries hold an asyncio.Event per request

# Calls that read time: module.function, and methods of an event loop.
TIME_CALLS = frozenset(
    {
        ("time", "time"),
        ("time", "time_ns"),
        ("time", "monotonic"),
        ("time", "monotonic_ns"),
        ("time", "perf_counter"),
        ("time", "perf_counter_ns"),
        ("time", "process_time"),
        ("time", "process_time_ns"),
        ("time", "thread_time"),
        ("time", "thread_time_ns"),
        ("time", "clock_gettime"),
        ("time", "clock_gettime_ns"),
        ("datetime", "now"),
        ("datetime", "utcnow"),
        ("datetime", "today"),
        ("date", "today"),
    }
)
TIME_MODULES = frozenset({"time"})
# Where time may be read: the one clock, and the emulator (an independent witness with its own clock).
TIME_READERS = ("sidecar/clock.py", "sidecar/emulator/")
# Where the process environment may be read: the one reader, and the emulator's standalone process.
ENV_READERS = ("sidecar/env.py", "sidecar/emulator/")


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module, dotted
    path: Path
    line: int
    target: str  # what it imports, dotted (a module, or a module's attribute)
    lazy: bool  # inside a function

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, *, lazy: bool) -> Iterator[tuple[ast.AST, bool]]:
    """Every node with whether it sits inside a function; `if TYPE_CHECKING:` bodies skipped."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other, lazy
                yield from _walk(other, lazy=lazy)
            continue
        inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield child, inner
        yield from _walk(child, lazy=inner)


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(module: str, path: Path, known: dict[str, Path] | None = None) -> list[Import]:
    known = MODULES if known is None else known
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []
    for node, lazy in _walk(tree, lazy=False):
        if isinstance(node, ast.Import):
            found += [Import(module, path, node.lineno, a.name, lazy) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path, node)
            for alias in node.names:
                # `from pkg import mod` imports the module pkg.mod when there is one.
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                found.append(Import(module, path, node.lineno, target, lazy))
    return found


IMPORTS = {m: _imports(m, p) for m, p in MODULES.items()}


def _internal(target: str) -> str | None:
    """The module of `sidecar` that `target` names (the longest known prefix), or None."""
    return _longest_known(target, MODULES)


def _longest_known(target: str, known: dict[str, Path]) -> str | None:
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in known:
            return name
    return None


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "sidecar"


def test_every_part_has_a_row_in_the_table() -> None:
    missing = sorted({part_of(m) for m in MODULES} - set(ALLOWED))
    assert not missing, f"add a row to ALLOWED for {missing}: which parts may they import?"


def test_each_part_imports_only_what_its_row_allows() -> None:
    bad = []
    for module, imports in IMPORTS.items():
        mine = part_of(module)
        allowed = ALLOWED.get(mine, frozenset())
        for imp in imports:
            target = _internal(imp.target)
            if target is None:
                continue
            theirs = part_of(target)
            line = f"{imp.where()}: {mine} imports {target} ({theirs} is not in its row)"
            if theirs != mine and theirs not in allowed and line not in bad:
                bad.append(line)
    assert not bad, "imports against the layering (tests/test_architecture.py ALLOWED):\n" + "\n".join(bad)


def test_core_imports_only_the_stdlib_and_itself() -> None:
    banned = {"asyncio", "time", "random", "uuid", "socket", "threading", "datetime", "os", "subprocess"}
    bad = []
    for module, imports in IMPORTS.items():
        if part_of(module) != "core":
            continue
        for imp in imports:
            top = imp.target.split(".")[0]
            if imp.target.startswith("sidecar."):
                if part_of(imp.target) != "core":
                    bad.append(f"{imp.where()}: {imp.target}")
            elif top not in sys.stdlib_module_names and top != "__future__":
                bad.append(f"{imp.where()}: {imp.target} (not the stdlib)")
            elif top in banned:
                bad.append(f"{imp.where()}: {imp.target} (core has no I/O, no clock, no randomness)")
    assert not bad, "core must be pure:\n" + "\n".join(bad)


def test_the_emulator_is_an_independent_witness() -> None:
    bad = [
        f"{imp.where()}: {imp.target}"
        for module, imports in IMPORTS.items()
        if part_of(module) == "emulator"
        for imp in imports
        if imp.target.startswith("sidecar") and part_of(imp.target) != "emulator"
    ]
    assert not bad, "the emulator imports nothing of the sidecar but itself:\n" + "\n".join(bad)


def test_the_product_never_imports_the_test_kit_and_the_emulator_only_lazily() -> None:
    bad = []
    for module, imports in IMPORTS.items():
        mine = part_of(module)
        if mine not in PRODUCT or mine == "emulator":
            continue
        for imp in imports:
            target = _internal(imp.target)
            if target is None:
                continue
            if part_of(target) == TEST_KIT:
                bad.append(f"{imp.where()}: {target} (the test kit is for tests, bench and soaks)")
            elif part_of(target) == "emulator" and not imp.lazy:
                bad.append(f"{imp.where()}: {target} at module level (only the sim path, lazily)")
    assert not bad, "\n".join(bad)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def _module_graph(
    modules: dict[str, Path] | None = None,
) -> tuple[dict[str, set[str]], dict[tuple[str, str], Import]]:
    """Who imports whom among `modules` (default: the sidecar's)."""
    known = MODULES if modules is None else modules
    imports_of = IMPORTS if modules is None else {m: _imports(m, p, known) for m, p in known.items()}
    graph: dict[str, set[str]] = {m: set() for m in known}
    where: dict[tuple[str, str], Import] = {}
    for module, imports in imports_of.items():
        for imp in imports:
            target = _longest_known(imp.target, known)
            # A package's __init__ that re-exports its modules is not a cycle with them.
            if target is None or target == module or module.startswith(target + "."):
                continue
            graph[module].add(target)
            where.setdefault((module, target), imp)
    return graph, where


def test_no_import_cycles_between_modules() -> None:
    graph, where = _module_graph()
    cycle = _cycle(graph)
    assert cycle is None, (
        "import cycle: "
        + " -> ".join(cycle)
        + "\n"
        + "\n".join(f"  {where[(a, b)].where()}: {a} imports {b}" for a, b in itertools.pairwise(cycle))
    )


def test_no_import_cycles_in_the_bench_and_the_soaks() -> None:
    tools = {
        _module_name(path): path
        for part in ("bench", "reliability")
        for path in sorted((ROOT / part).rglob("*.py"))
    }
    graph, where = _module_graph(tools)
    cycle = _cycle(graph)
    assert cycle is None, (
        "import cycle: "
        + " -> ".join(cycle)
        + "\n"
        + "\n".join(f"  {where[(a, b)].where()}: {a} imports {b}" for a, b in itertools.pairwise(cycle))
    )


def test_the_cycle_finder_finds_a_cycle() -> None:
    # The check above must be able to fail.
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _time_reads(path: Path, root: Path = ROOT) -> list[str]:
    """Calls that read time, by AST: time.*(), datetime.now()/utcnow(), loop.time(),
    asyncio.get_running_loop().time(), and names imported from `time`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    from_time = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in TIME_MODULES
        for alias in node.names
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in from_time:
            found.append(f"{path.relative_to(root)}:{node.lineno}: {func.id}()")
        elif isinstance(func, ast.Attribute):
            owner = func.value
            owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
            if (owner_name, func.attr) in TIME_CALLS:
                found.append(f"{path.relative_to(root)}:{node.lineno}: {owner_name}.{func.attr}()")
            elif func.attr == "time" and not node.args and _is_loop(owner):
                found.append(f"{path.relative_to(root)}:{node.lineno}: <event loop>.time()")
    return found


def _is_loop(node: ast.expr) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
        name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
        return name in {"get_running_loop", "get_event_loop", "new_event_loop"}
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return name in {"loop", "_loop", "event_loop"}


def test_only_the_clock_reads_time() -> None:
    bad = [
        read
        for path in MODULES.values()
        if not str(path.relative_to(ROOT)).startswith(TIME_READERS)
        for read in _time_reads(path)
    ]
    assert not bad, "read time only in sidecar/clock.py (pass `now` or a Clock in):\n" + "\n".join(bad)


def test_the_time_check_sees_every_form(tmp_path: Path) -> None:
    sample = tmp_path / "sidecar" / "sample.py"
    sample.parent.mkdir()
    sample.write_text(
        "import asyncio, time, datetime\n"
        "from time import perf_counter as pc\n"
        "a = time.monotonic()\nb = pc()\nc = datetime.datetime.now()\n"
        "d = asyncio.get_running_loop().time()\n"
        "def f(loop):\n    return loop.time()\n"
        "text = 'time.time() in a string is not a call'\n"
    )
    reads = _time_reads(sample, root=tmp_path)
    assert [r.split(": ", 1)[1] for r in reads] == [
        "time.monotonic()",
        "pc()",
        "datetime.now()",
        "<event loop>.time()",
        "<event loop>.time()",
    ]


def _environment_reads(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb", "putenv"}:
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [
                f"{path.relative_to(ROOT)}:{node.lineno}: from os import {a.name}"
                for a in node.names
                if a.name in {"environ", "getenv", "environb"}
            ]
    return found


def test_only_env_reads_the_environment() -> None:
    bad = [
        read
        for path in MODULES.values()
        if not str(path.relative_to(ROOT)).startswith(ENV_READERS)
        for read in _environment_reads(path)
    ]
    assert not bad, "read the environment only in sidecar/env.py (pass values in):\n" + "\n".join(bad)


def test_mcp_server_never_imports_bybit_and_the_probe_never_the_service() -> None:
    # Rows of ALLOWED already say so; these are the two DESIGN names explicitly.
    assert "bybit" not in ALLOWED["mcp_server"]
    assert not {"service", "mcp_server", "journal", "cli"} & ALLOWED["probe"]
    assert not {"bybit", "core", "service", "mcp_server", "metrics"} & ALLOWED["http_transport"]


def test_inside_the_service_package_imports_follow_the_arrows() -> None:
    assert (PKG / "service" / "__init__.py").exists(), "sidecar/service/ is a package of small parts"
    inner = {
        m.split(".")[-1] if m != "sidecar.service" else "__init__": m
        for m in MODULES
        if part_of(m) == "service"
    }
    missing = sorted(set(SERVICE_ARROWS) - {"__init__"} - set(inner))
    unknown = sorted(set(inner) - set(SERVICE_ARROWS))
    assert not unknown, f"add rows to SERVICE_ARROWS for {unknown}"
    bad = []
    for name, module in inner.items():
        for imp in IMPORTS[module]:
            target = _internal(imp.target)
            if target is None or part_of(target) != "service" or target == "sidecar.service":
                continue
            other = target.split(".")[2]
            if other != name and other not in SERVICE_ARROWS[name]:
                bad.append(f"{imp.where()}: service.{name} imports service.{other}")
        if name in SERVICE_PURE:
            bad += [
                f"{imp.where()}: service.{name} imports {imp.target} (a pure part: no asyncio, no I/O)"
                for imp in IMPORTS[module]
                if imp.target.split(".")[0] in {"asyncio", "sqlite3", "socket", "websockets", "aiohttp"}
            ]
    assert not bad, "\n".join(bad)
    assert not missing, f"the service package has no {missing} yet"
