"""The `sidecar` command (console script `sidecar.cli:main`, also `python -m sidecar`).

The parts, one job each:
- `main`: the parser, the one read of the environment, dispatch, and the one place a `SidecarError`
  becomes an exit code (0 ok, 2 usage or config, 1 runtime) and its message;
- `serve` (+ `serve_runtime`: one server per journal, signals, a bounded stop; `exchange`: where it
  trades, the in-process emulator in sim mode);
- `ops`: the operator's `halt`, `resume`, `status`, `journal [prune]`, `reload`;
- `demo`: a scripted agent session; `scaffold`: `sidecar init`.

Command functions take the parsed arguments and an `Environment` and return an exit code. Nothing
here holds business rules, and nothing in the product imports this package.
"""

from sidecar.cli.main import main

__all__ = ["main"]
