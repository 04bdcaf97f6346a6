"""The harness around the product (issue 12): bench/ measures performance, reliability/ runs the soaks,
and neither reaches into the product by test hooks.

- reliability/ builds on bench/'s shared set-up; bench/ never imports reliability/ (except its
  `__main__`, which forwards the old `python -m bench soak|oversize` commands).
- Neither subclasses the service nor patches an attribute of an object it was given (the old
  `service.trade.send = timed_send`): they measure through the product's own hooks
  (`Service.observer`, `serve_stdio(on_call=...)`).
- Tests import them as packages from the repository root (pytest's `pythonpath`), never by editing
  `sys.path`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HARNESS = sorted([*(ROOT / "bench").glob("*.py"), *(ROOT / "reliability").glob("*.py")])


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_harness_is_there() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in HARNESS}
    assert {"bench/stats.py", "bench/common.py", "reliability/suite.py", "reliability/stack.py"} <= names


def test_bench_does_not_import_reliability() -> None:
    for path in (ROOT / "bench").glob("*.py"):
        if path.name == "__main__.py":
            continue
        bad = {n for n in _imported(_tree(path)) if n.split(".")[0] == "reliability"}
        assert not bad, f"bench/{path.name} imports {sorted(bad)}"


def test_no_subclass_of_the_service_and_no_patched_attributes() -> None:
    for path in HARNESS:
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                assert "Service" not in bases, f"{where}: class {node.name} subclasses Service"
            if not isinstance(node, ast.Assign):
                continue
            for t in node.targets:
                # `a.b.c = ...` replaces something inside an object the harness did not make.
                assert not (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Attribute)), (
                    f"{where}:{node.lineno}: assigns {ast.unparse(t)}"
                )


def test_tests_do_not_edit_sys_path() -> None:
    for path in sorted((ROOT / "tests").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for banned in ("sys.path.insert(", "sys.path.append(", "syspath_prepend("):
            assert banned not in text or path.name == Path(__file__).name, f"{path.name}: {banned}"
