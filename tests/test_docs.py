"""Docs follow code: every YAML example passes check-config, every relative link and cited repository
file exists, the README's Inspector commands are pinned, match the banner's hint and really run, the
client snippets carry an `env` block, and the operator facts (NTP, HMAC keys) are written down."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.cli import main
from sidecar.cli.serve import INSPECTOR, connect_hint
from sidecar.packaged import packaged_config_path

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
# Files a doc may name that live on the user's machine, not in this repository.
CLIENT_SIDE_FILES = {"claude_desktop_config.json", ".cursor/mcp.json", "mcp-client.json", "sidecar.yaml"}


def _blocks(language: str) -> list[tuple[Path, int, str]]:
    """(file, line, text) of every fenced block in `language` in README.md and docs/*.md."""
    found = []
    fence = re.compile(rf"^```{language}\n(.*?)^```", re.MULTILINE | re.DOTALL)
    for path in DOCS:
        text = path.read_text()
        for m in fence.finditer(text):
            found.append((path, text.count("\n", 0, m.start()) + 1, m.group(1)))
    return found


YAML_BLOCKS = _blocks("yaml")


def test_there_are_yaml_examples_to_check() -> None:
    assert {p.name for p, _, _ in YAML_BLOCKS} >= {"rate-limits.md", "operations.md", "approval.md"}


@pytest.mark.parametrize(
    ("path", "line", "block"), YAML_BLOCKS, ids=[f"{p.name}:{n}" for p, n, _ in YAML_BLOCKS]
)
def test_every_yaml_example_passes_check_config(
    path: Path, line: int, block: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full example (with `version`) is checked as it is; a fragment replaces its top-level sections
    in the shipped default config, the way a reader would paste it."""
    fragment = yaml.safe_load(block)
    assert isinstance(fragment, dict), f"{path.name}:{line}: not a mapping"
    config: dict[str, Any] = (
        {} if "version" in fragment else yaml.safe_load(packaged_config_path().read_text())
    )
    config.update(fragment)
    config.setdefault("journal", {})["path"] = str(tmp_path / "journal.sqlite3")
    target = tmp_path / "example.yaml"
    target.write_text(yaml.safe_dump(config))
    code = main(["check-config", str(target)])
    assert code == 0, f"{path.name}:{line}: {capsys.readouterr().err}"


def _links(text: str) -> list[str]:
    return re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_relative_links_resolve(path: Path) -> None:
    text = path.read_text()
    for target in _links(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        assert resolved.exists(), f"{path.name}: link to missing {target}"
        if anchor and resolved.suffix == ".md":
            headings = {
                re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
                for h in re.findall(r"^#+ (.*)$", resolved.read_text(), re.MULTILINE)
            }
            assert anchor in headings, f"{path.name}: no heading for #{anchor} in {resolved.name}"


# A path in backticks that names a file of this repository (by directory or by a known extension);
# paths under other first segments (DIR/..., ~/...) are examples of the reader's own files.
_REPO_DIRS = {"sidecar", "tests", "bench", "reliability", "config", "docs", "reference", "img", ".ci"}
_CITED = re.compile(r"`((?:[\w.-]+/)*[\w.-]+\.(?:md|py|yaml|yml|json|png|toml|txt))(?:[ :][^`]*)?`")


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_cited_repository_files_exist(path: Path) -> None:
    names = {p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*") if ".venv" not in p.parts}
    basenames = {n.rsplit("/", 1)[-1] for n in names}
    for cited in _CITED.findall(path.read_text()):
        if cited in CLIENT_SIDE_FILES:
            continue
        if "/" in cited:
            if cited.split("/", 1)[0] not in _REPO_DIRS:
                continue
            relative = (path.parent / cited).resolve()
            assert cited in names or relative.exists(), (
                f"{path.name} cites {cited}, which is not in the repository"
            )
        else:
            assert cited in basenames, f"{path.name} cites {cited}, which is not in the repository"


def _inspector_commands(text: str) -> list[str]:
    """Every `npx ...` command in the text, continuation lines joined."""
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("npx ")]


def test_every_inspector_command_is_pinned_and_non_interactive() -> None:
    commands = [c for p in DOCS for c in _inspector_commands(p.read_text())]
    assert len(commands) >= 4
    for command in commands:
        assert command.startswith(f"npx -y {INSPECTOR} "), command


def test_the_banner_hint_is_the_readme_command(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    hint = connect_hint("stdio", "", config_path=tmp_path / "sidecar.yaml")
    form = f"npx -y {INSPECTOR} --cli --method tools/list -- "
    assert hint.startswith(form)
    assert form + ".venv/bin/sidecar serve" in readme
    http_hint = connect_hint("http", "http://127.0.0.1:8765/mcp", token_env="SIDECAR_HTTP_TOKEN")
    assert http_hint in " ".join(_inspector_commands((ROOT / "docs" / "http.md").read_text()))


def test_client_snippets_pass_the_keys_in_an_env_block() -> None:
    found = 0
    for path in DOCS:
        for _, _, block in [(p, n, b) for p, n, b in _blocks("json") if p == path]:
            data = json.loads(block)
            if isinstance(data, dict) and "mcpServers" in data:
                for server in data["mcpServers"].values():
                    found += 1
                    assert set(server["env"]) >= {"BYBIT_API_KEY", "BYBIT_API_SECRET"}, path.name
                    assert Path(server["command"]).is_absolute(), path.name
    assert found >= 1


def test_operator_facts_are_written_down() -> None:
    readme = (ROOT / "README.md").read_text()
    operations = (ROOT / "docs" / "operations.md").read_text()
    for text in (readme, operations):
        assert re.search(r"NTP", text), "the host clock must be NTP-synced"
        assert re.search(r"HMAC", text), "only HMAC keys are supported"
    assert "sidecar init" in readme and "pipx install" in readme and "uv tool install" in readme


@pytest.mark.slow
async def test_the_readme_inspector_commands_really_run(tmp_path: Path) -> None:
    """The README's two stdio commands, verbatim, in a directory laid out like a checkout."""
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx is not on PATH: the MCP Inspector CLI cannot run here")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    config = yaml.safe_load((ROOT / "config" / "sidecar.yaml").read_text())
    config["journal"]["path"] = str(tmp_path / "journal.sqlite3")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "sidecar.yaml").write_text(yaml.safe_dump(config))
    commands = [c for c in _inspector_commands((ROOT / "README.md").read_text()) if ".venv/bin/sidecar" in c]
    assert [("tools/list" in c, "tools/call" in c) for c in commands] == [(True, False), (False, True)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BYBIT_", "SIDECAR_"))}
    outputs = []
    for command in commands:
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", command, cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(120):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            pytest.skip(f"{INSPECTOR} could not be fetched and run within 120 s")
        if proc.returncode != 0 and b"npm error" in err:
            pytest.skip(f"npx could not fetch {INSPECTOR}: {err.decode(errors='replace').strip()[-200:]}")
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        outputs.append(json.loads(out))
    assert "wsBatchAmendOrders" in {t["name"] for t in outputs[0]["tools"]}
    body = outputs[1]["structuredContent"]
    assert body["outcome"] == "verified", body
    assert [i["orderLinkId"] for i in body["items"]] == ["sim-btc-buy-1", "sim-eth-buy-1"]
