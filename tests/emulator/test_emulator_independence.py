"""The emulator is an independent witness: it imports no other sidecar module (DESIGN §3)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import sidecar.emulator

EMULATOR_DIR = Path(sidecar.emulator.__file__).parent


def test_emulator_sources_import_only_themselves_from_sidecar() -> None:
    offenders = []
    for path in sorted(EMULATOR_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("sidecar") and not name.startswith("sidecar.emulator"):
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_importing_the_emulator_loads_no_other_sidecar_package() -> None:
    code = (
        "import sys, sidecar.emulator.standalone\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.startswith('sidecar') and not m.startswith('sidecar.emulator')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['sidecar']"
