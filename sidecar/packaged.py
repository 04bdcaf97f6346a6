"""Which config file a command uses when `--config` is not given, and the files shipped in the package.

The rule: `--config PATH` when given; else `config/sidecar.yaml` in the current directory when it
exists (a source checkout); else the default shipped inside the package (`sidecar/data/sidecar.yaml`:
the built-in emulator, the journal in ~/.local/state/bybit-order-sidecar/). So `pip install` or
`pipx install` gives a `sidecar` that works in any directory, and a checkout keeps its own file.

This module only locates files: it must not read, validate or write them.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["CHECKOUT_CONFIG", "default_config_path", "packaged_config_path"]

CHECKOUT_CONFIG = Path("config/sidecar.yaml")


def packaged_config_path() -> Path:
    """The default config inside the installed package (a real file: the package is never zipped)."""
    return Path(str(files("sidecar").joinpath("data", "sidecar.yaml")))


def default_config_path(cwd: Path) -> Path:
    """The config to use without `--config`, for a process whose working directory is `cwd`."""
    local = cwd / CHECKOUT_CONFIG
    return local if local.is_file() else packaged_config_path()
