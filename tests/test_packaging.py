"""Packaging: licence metadata, `--version`, the config shipped in the package, `sidecar init`, `make run`,
and a fresh `pip install` that works outside the checkout (the slow one)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from sidecar import __version__
from sidecar.cli import main
from sidecar.cli.scaffold import CONFIG_NAME, SERVER_NAME, SNIPPET_NAME
from sidecar.config import load_config
from sidecar.packaged import default_config_path, packaged_config_path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_licence_file_and_pep639_metadata() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"  # an SPDX expression, not the deprecated table
    assert project["license-files"] == ["LICENSE"]
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))
    requires = PYPROJECT["build-system"]["requires"]
    assert requires == ["setuptools>=77"]  # the first setuptools that understands PEP 639


def test_version_has_one_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "sidecar.__version__"}
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"sidecar {__version__}\n"


def test_python_m_sidecar_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sidecar", "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout == f"sidecar {__version__}\n"


def test_the_packaged_default_is_the_checkout_default_with_a_home_journal() -> None:
    packaged = yaml.safe_load(packaged_config_path().read_text())
    checkout = yaml.safe_load((ROOT / "config" / "sidecar.yaml").read_text())
    assert packaged["journal"].pop("path") == "~/.local/state/bybit-order-sidecar/journal.sqlite3"
    checkout["journal"].pop("path")
    assert packaged == checkout  # same limits, same exchange (sim): only the journal's place differs
    assert load_config(packaged_config_path()).journal.path == str(
        Path.home() / ".local/state/bybit-order-sidecar/journal.sqlite3"
    )


def test_which_config_without_config_flag(tmp_path: Path) -> None:
    assert default_config_path(ROOT) == ROOT / "config" / "sidecar.yaml"  # a checkout keeps its file
    assert default_config_path(tmp_path) == packaged_config_path()  # anywhere else: the packaged one
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "sidecar.yaml").write_text("version: 1\n")
    assert default_config_path(tmp_path) == tmp_path / "config" / "sidecar.yaml"


def test_init_writes_a_commented_config_and_a_client_snippet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "new" / "dir"
    assert main(["init", str(target)]) == 0
    out = capsys.readouterr().out
    config_path, snippet_path = target / CONFIG_NAME, target / SNIPPET_NAME
    assert str(config_path) in out and str(snippet_path) in out
    text = config_path.read_text()
    assert text.startswith("# Written by `sidecar init`")
    assert sum("#" in line for line in text.splitlines()) > 30  # commented for a human
    config = load_config(config_path)
    assert config.exchange.env == "sim"
    assert config.journal.path == str(target / "var" / "journal.sqlite3")  # absolute: any cwd meets it
    snippet = json.loads(snippet_path.read_text())
    server = snippet["mcpServers"][SERVER_NAME]
    assert Path(server["command"]).is_absolute() and Path(server["command"]).exists()
    assert server["args"][-3:] == ["serve", "--config", str(config_path)]
    assert server["env"] == {"BYBIT_API_KEY": "", "BYBIT_API_SECRET": ""}


@pytest.mark.parametrize("existing", [CONFIG_NAME, SNIPPET_NAME])
def test_init_never_overwrites(tmp_path: Path, existing: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / existing).write_text("mine\n")
    assert main(["init", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sidecar: init: ") and str(tmp_path / existing) in err
    assert len(err.splitlines()) == 1
    assert (tmp_path / existing).read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]  # the other file was not written


def test_init_defaults_to_the_current_directory(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "sidecar", "init"], cwd=tmp_path, check=True, timeout=60,
                   capture_output=True)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG_NAME, SNIPPET_NAME])


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_installs_runtime_dependencies_only(tmp_path: Path) -> None:
    venv = tmp_path / "venv"

    def dry_run(target: str) -> str:
        done = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True,
                              text=True, check=True, timeout=60)  # fmt: skip
        return done.stdout

    run = dry_run("run")
    assert "-e ." in run and ".[test]" not in run  # runtime dependencies only
    assert "echo" in run  # and it says what it is doing
    assert ".[test]" in dry_run("install")  # the test toolchain is `make test`'s business


@pytest.mark.slow
def test_fresh_pip_install_works_outside_the_checkout(tmp_path: Path) -> None:
    """`pip install <checkout>` into a new venv, then init, check-config and demo from elsewhere."""
    src = tmp_path / "src"  # a copy: building in the checkout would leave build/ and egg-info there
    shutil.copytree(ROOT / "sidecar", src / "sidecar", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    venv, home, work = tmp_path / "venv", tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BYBIT_", "SIDECAR_", "PYTHON"))}
    env["HOME"] = str(home)  # the packaged default's journal goes under $HOME: keep it in tmp_path
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-v",
         "--no-compile", "-c", ROOT / "constraints.txt", src],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    build_log = install.stdout + install.stderr
    assert "SetuptoolsDeprecationWarning" not in build_log  # no licence table or classifier warning

    def sidecar(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([venv / "bin" / "sidecar", *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip

    version = sidecar("--version")
    assert version.stdout == f"sidecar {__version__}\n", version.stderr
    as_module = subprocess.run([venv / "bin" / "python", "-m", "sidecar", "--version"], cwd=work, env=env,
                               capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert as_module.stdout == version.stdout
    probe = (
        "import importlib.metadata as m; d = m.distribution('bybit-order-sidecar');"
        "print(d.metadata['License-Expression']); print([str(f) for f in d.files if 'LICENSE' in str(f)])"
    )
    meta = subprocess.run([venv / "bin" / "python", "-c", probe], cwd=work, env=env, capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    assert meta.stdout.splitlines()[0] == "MIT" and "LICENSE" in meta.stdout.splitlines()[1]

    target = work / "mysidecar"
    init = sidecar("init", str(target))
    assert init.returncode == 0, init.stderr
    assert sidecar("check-config", str(target / CONFIG_NAME)).returncode == 0
    snippet = json.loads((target / SNIPPET_NAME).read_text())
    assert snippet["mcpServers"][SERVER_NAME]["command"] == str(venv / "bin" / "sidecar")
    demo = sidecar("demo", "--config", str(target / CONFIG_NAME))
    assert demo.returncode == 0, demo.stderr
    assert "verified" in demo.stdout and "PRICE_OUT_OF_BAND" in demo.stdout
    # No --config and no ./config/sidecar.yaml: the default shipped in the package.
    bare = sidecar("demo")
    assert bare.returncode == 0, bare.stderr
    assert "verified" in bare.stdout
