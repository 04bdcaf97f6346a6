"""`sidecar init [DIR]`: write a commented config and an MCP client snippet for Claude Desktop or Cursor.

DIR/sidecar.yaml is the packaged default config (the built-in emulator, so it runs as it is) with its
journal in DIR/var/; DIR/mcp-client.json is an `mcpServers` entry with absolute paths and an `env` block
for BYBIT_API_KEY / BYBIT_API_SECRET. Nothing is overwritten: if either file exists, nothing is written
and the command exits 2. This module writes files only; it must not start or validate anything.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from sidecar.errors import ExitCode
from sidecar.packaged import packaged_config_path

__all__ = ["CONFIG_NAME", "SERVER_NAME", "SNIPPET_NAME", "client_snippet", "config_text", "init"]

CONFIG_NAME = "sidecar.yaml"
SNIPPET_NAME = "mcp-client.json"
SERVER_NAME = "bybit-sidecar"

_HEADER = """\
# Written by `sidecar init`. Check it with `sidecar check-config {config}`.
# Your MCP client starts the server with it: paste mcp-client.json (beside this file) into Claude
# Desktop's claude_desktop_config.json or Cursor's .cursor/mcp.json. As written it runs on the
# built-in emulator (no keys, no network); to trade, change exchange.env (testnet first) and put
# your keys in the snippet's `env` block, never in this file.
"""
# The one `path:` line of the journal section (two-space indent, under `journal:`).
_JOURNAL_PATH_RE = re.compile(r"^(journal:\n(?:  #.*\n)*  path: ).*$", re.MULTILINE)


def config_text(config_path: Path, journal_path: Path) -> str:
    """The packaged default config, headed for `config_path`, with its journal at `journal_path`."""
    text = packaged_config_path().read_text(encoding="utf-8")
    _, _, body = text.partition("\n\n")  # the packaged file's own header ends at the first blank line
    # A JSON string is a valid YAML double-quoted scalar: any path is written safely.
    body, count = _JOURNAL_PATH_RE.subn(lambda m: m.group(1) + json.dumps(str(journal_path)), body)
    if count != 1:
        raise RuntimeError("the packaged config has no single journal.path line to set")
    return _HEADER.format(config=config_path) + "\n" + body


def sidecar_command() -> list[str]:
    """How an MCP client starts this installation's `sidecar`: absolute, independent of PATH."""
    python = Path(os.path.abspath(sys.executable))  # not resolved: a venv's python is a symlink
    script = python.parent / "sidecar"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(python), "-m", "sidecar"]


def client_snippet(config_path: Path) -> dict[str, Any]:
    """The `mcpServers` entry Claude Desktop and Cursor read (same shape in both)."""
    command, *prefix = sidecar_command()
    return {
        "mcpServers": {
            SERVER_NAME: {
                "command": command,
                "args": [*prefix, "serve", "--config", str(config_path)],
                # Empty is fine for the emulator; fill them in for testnet/mainnet.
                "env": {"BYBIT_API_KEY": "", "BYBIT_API_SECRET": ""},
            }
        }
    }


def init(directory: Path) -> int:
    """Write DIR/sidecar.yaml and DIR/mcp-client.json; exit 2 and write nothing if either exists."""
    target = Path(os.path.abspath(directory))
    config_path = target / CONFIG_NAME
    snippet_path = target / SNIPPET_NAME
    existing = [str(p) for p in (config_path, snippet_path) if p.exists()]
    if existing:
        print(
            f"sidecar: init: {', '.join(existing)} already exist(s); nothing written "
            "(remove it or choose another DIR)",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    config = config_text(config_path, target / "var" / "journal.sqlite3")
    snippet = json.dumps(client_snippet(config_path), indent=2) + "\n"
    written: list[Path] = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        for path, text in ((config_path, config), (snippet_path, snippet)):
            with path.open("x", encoding="utf-8") as out:  # "x": never overwrite, even in a race
                out.write(text)
            written.append(path)
    except OSError as exc:
        for path in written:  # all or nothing
            path.unlink(missing_ok=True)
        print(f"sidecar: init: cannot write into {target}: {exc.strerror or exc}", file=sys.stderr)
        return ExitCode.USAGE if isinstance(exc, FileExistsError) else ExitCode.RUNTIME
    print(f"wrote {config_path}  (runs on the built-in emulator; comments explain every key)")
    print(f"wrote {snippet_path}  (paste into claude_desktop_config.json or .cursor/mcp.json)")
    print("next:")
    print(f"  sidecar check-config {config_path}")
    print(f"  sidecar demo --config {config_path}")
    print(f"  sidecar serve --config {config_path}")
    return ExitCode.OK
