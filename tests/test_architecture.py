"""The layering of DESIGN.md §2, enforced by reading imports (an import may only point left).

core ← config, bybit ← journal ← service ← mcp_server, cli. core is stdlib only; the emulator imports
neither bybit nor core; mcp_server never imports bybit; only clock.py reads time.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "sidecar"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(sub: str) -> list[Path]:
    return sorted((ROOT / sub).rglob("*.py")) if (ROOT / sub).is_dir() else [ROOT / sub]


def test_core_imports_only_the_stdlib_and_itself() -> None:
    banned_stdlib = {"asyncio", "time", "random", "uuid", "socket", "threading", "datetime"}
    for path in _modules("core"):
        for name in _imports(path):
            top = name.split(".")[0]
            if name.startswith("sidecar."):
                assert name.startswith("sidecar.core"), f"{path.name} imports {name}"
                continue
            assert top in sys.stdlib_module_names or top == "__future__", f"{path.name} imports {name}"
            assert top not in banned_stdlib, f"{path.name} imports {name} (core has no I/O or clock)"


def test_emulator_is_an_independent_witness() -> None:
    for path in _modules("emulator"):
        for name in _imports(path):
            assert not name.startswith(("sidecar.core", "sidecar.bybit", "sidecar.service")), (
                f"emulator/{path.name} imports {name}"
            )


def test_mcp_server_never_imports_bybit() -> None:
    path = ROOT / "mcp_server.py"
    if path.exists():
        assert not any(n.startswith("sidecar.bybit") for n in _imports(path))


def test_bybit_does_not_import_service_layers() -> None:
    for path in _modules("bybit"):
        for name in _imports(path):
            assert not name.startswith(
                (
                    "sidecar.service",
                    "sidecar.mcp_server",
                    "sidecar.cli",
                    "sidecar.journal",
                    "sidecar.emulator",
                )
            ), f"bybit/{path.name} imports {name}"


def test_only_clock_reads_time() -> None:
    for path in ROOT.rglob("*.py"):
        if path.name == "clock.py" or "emulator" in path.parts:
            continue
        source = path.read_text(encoding="utf-8")
        for call in ("time.time(", "time.monotonic(", "time.monotonic_ns(", "time.time_ns(", "datetime.now("):
            assert call not in source, f"{path.relative_to(ROOT)} reads time with {call}"


def test_http_edge_knows_no_service_tools_or_exchange() -> None:
    for name in ("http_transport.py", "http_guard.py"):
        for imported in _imports(ROOT / name):
            assert not imported.startswith(
                ("sidecar.service", "sidecar.mcp_server", "sidecar.bybit", "sidecar.core", "sidecar.metrics")
            ), f"{name} imports {imported}"


def test_logs_and_observer_hook_stay_leaves() -> None:
    # logs.py is used by the emulator's process and by every layer: it imports no sidecar module.
    assert not any(n.startswith("sidecar") for n in _imports(ROOT / "logs.py"))
    # The service's metrics hook must not pull prometheus_client (or anything else heavy) into the service.
    assert {n for n in _imports(ROOT / "observer.py") if not n.startswith("__")} <= {
        "collections.abc",
        "typing",
        "sidecar.results",
    }


def test_probe_uses_the_adapters_never_the_service() -> None:
    # `sidecar probe` checks the assumptions of sidecar/bybit directly; the service is being
    # restructured and must stay out of it (as must the MCP layer, the journal and the CLI).
    for path in _modules("probe"):
        for name in _imports(path):
            assert not name.startswith(
                (
                    "sidecar.service",
                    "sidecar.mcp_server",
                    "sidecar.journal",
                    "sidecar.commands",
                    "sidecar.cli",
                )
            ), f"probe/{path.name} imports {name}"
