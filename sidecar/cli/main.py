"""The `sidecar` command: parse arguments, read the environment once, dispatch to the module that
does the work, and map failures to exit codes in one place: a `SidecarError` exits with its
`exit_code` (2 usage or config, 1 runtime) and its message; anything else is a runtime failure in
one line. No traceback reaches a user.

It must not contain business rules. Heavy modules are imported lazily so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sidecar import __version__
from sidecar.env import LOG_FORMAT_ENV, LOG_LEVEL_ENV, Environment
from sidecar.errors import ExitCode, SidecarError, UsageError

__all__ = ["main"]

# The default of every `--config`: compared by identity, so an explicit `--config config/sidecar.yaml`
# is used as given while the default falls back to the config shipped in the package (sidecar/packaged.py).
DEFAULT_CONFIG = Path("config/sidecar.yaml")
# Commands whose output is the point: their logs stay quiet unless --log-level or the environment asks.
_QUIET_COMMANDS = {"demo": "error", "probe": "error"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sidecar", description="Bybit order-safety sidecar (MCP server).")
    p.add_argument("--version", action="version", version=f"sidecar {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the MCP server")
    s.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    s.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--exchange-url", default=None, help="one base URL for REST and WebSockets")
    s.add_argument(
        "--allow-remote",
        action="store_true",
        help="permit binding a non-loopback --host for the HTTP transport (prints a warning)",
    )
    s.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="N",
        help="also serve GET /healthz and /metrics on 127.0.0.1:N (no token; 0 picks a free port)",
    )

    e = sub.add_parser("emulator", help="run the Bybit V5 exchange emulator alone")
    e.add_argument("--host", default="127.0.0.1")
    e.add_argument("--port", type=int, default=0, help="0 picks a free port")
    e.add_argument("--api-key", default=None)
    e.add_argument("--api-secret", default=None)
    e.add_argument("--seed", type=int, default=None)

    c = sub.add_parser("check-config", help="validate a config file")
    c.add_argument("path", type=Path)

    h = sub.add_parser("halt", help="stop all amends (kill switch)")
    h.add_argument("--reason", default="operator halt")
    h.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    r = sub.add_parser("resume", help="allow amends again")
    r.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    rl = sub.add_parser("reload", help="make the running server re-read its config (SIGHUP)")
    rl.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    st = sub.add_parser("status", help="trading state and health")
    st.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    st.add_argument("--json", action="store_true")

    j = sub.add_parser(
        "journal",
        help="read the journal, or prune it (`sidecar journal prune`)",
        description="Read the journal (recent requests, or one with --request), or with `prune` delete "
        "settled requests older than journal.retain_days (or --older-than-days).",
    )
    j.add_argument("action", nargs="?", choices=["prune"], help="prune: delete old settled requests")
    j.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    j.add_argument("--last", type=int, default=20)
    j.add_argument("--request", default=None)
    j.add_argument(
        "--older-than-days",
        type=_days,
        default=None,
        metavar="N",
        help="with prune: settled requests created more than N days ago (default: journal.retain_days)",
    )
    j.add_argument("--json", action="store_true")

    pr = sub.add_parser(
        "probe", help="check every assumption the sidecar makes about the exchange (ok/differs/skipped/error)"
    )
    pr.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    pr.add_argument("--exchange-url", default=None, help="one base URL for REST and WebSockets")
    pr.add_argument(
        "--allow-orders",
        action="store_true",
        help="also rest, amend and cancel the probe's own test orders (testnet or an emulator only)",
    )
    pr.add_argument("--json", action="store_true", help='print {"exchange": ..., "checks": [...]}')
    pr.add_argument(
        "--ticker-seconds",
        type=_seconds,
        default=10.0,
        metavar="N",
        help="how long to watch the configured symbols' tickers (default 10)",
    )

    d = sub.add_parser("demo", help="scripted agent session against the emulator")
    d.add_argument("--config", type=Path, default=DEFAULT_CONFIG)

    i = sub.add_parser("init", help="write a commented config and an MCP client snippet into DIR")
    i.add_argument("dir", nargs="?", type=Path, default=Path(), metavar="DIR")

    for command in sub.choices.values():
        _add_log_options(command)
    return p


def _number_in(
    parse: Callable[[str], float], low: float, high: float, what: str, unit: str
) -> Callable[[str], Any]:
    """An argparse `type`: `parse(text)` within [low, high] (NaN and infinity are outside), else a
    usage error that names the value."""

    def check(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None
        if not low <= value <= high:  # NaN fails both comparisons
            raise argparse.ArgumentTypeError(f"{text}{unit} is outside {low:g}..{high:g}")
        return value

    return check


_port = _number_in(int, 0, 65535, "port number", "")  # port 0: the OS picks one
_seconds = _number_in(float, 0.5, 3600, "number of seconds", " s")  # probe --ticker-seconds
_days = _number_in(float, 0, 36_500, "number of days", " days")  # journal prune --older-than-days


def _add_log_options(command: argparse.ArgumentParser) -> None:
    from sidecar.logs import LOG_FORMATS, LOG_LEVELS

    command.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default=None,
        help="log level on stderr (default: $SIDECAR_LOG_LEVEL or info)",
    )
    command.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="json lines (default) or console for humans (default: $SIDECAR_LOG_FORMAT or json)",
    )


def main(argv: Sequence[str] | None = None, *, service_options: Mapping[str, Any] | None = None) -> int:
    """Run one command; its exit code. `service_options` are extra `Service` arguments for `serve`
    (the seam of `python -m sidecar.testing.serve`; the console script passes none)."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args, Environment.from_process(), service_options)
    except KeyboardInterrupt:
        return ExitCode.OK
    except SidecarError as err:  # the one place an error becomes an exit code and its message
        for line in err.lines():
            print(line, file=sys.stderr)
        return err.exit_code
    except Exception as exc:  # the last line of defence: no traceback reaches a user
        print(f"sidecar: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitCode.RUNTIME


def _dispatch(
    args: argparse.Namespace, env: Environment, service_options: Mapping[str, Any] | None = None
) -> int:
    _configure_logging(args, env)
    if getattr(args, "config", None) is DEFAULT_CONFIG:
        from sidecar.packaged import default_config_path

        args.config = default_config_path(Path.cwd())
    if args.command == "serve":
        from sidecar.cli.serve import serve

        return serve(args, env, service_options=service_options)
    command: Callable[[argparse.Namespace, Environment], int] = _command(args.command)
    return command(args, env)


def _command(name: str) -> Callable[[argparse.Namespace, Environment], int]:
    """The function behind a command, imported only when that command runs."""
    if name in {"halt", "resume", "status", "journal", "reload"}:
        from sidecar.cli import ops

        handler: Callable[[argparse.Namespace, Environment], int] = getattr(ops, name)
        return handler
    if name == "demo":
        from sidecar.cli.demo import demo

        return demo
    if name == "probe":
        from sidecar.probe.runner import probe_command

        return probe_command
    if name == "init":
        from sidecar.cli.scaffold import init

        return lambda args, _env: init(args.dir)
    if name == "emulator":
        from sidecar.emulator.standalone import run_standalone

        return lambda args, _env: run_standalone(
            host=args.host, port=args.port, api_key=args.api_key, api_secret=args.api_secret, seed=args.seed
        )
    if name == "check-config":
        return _check_config
    raise UsageError(f"unknown command {name!r}")


def _configure_logging(args: argparse.Namespace, env: Environment) -> None:
    """Set up logging once for every command: flag, else environment, else the command's default."""
    from sidecar.logs import CURRENT_STDERR, LOG_LEVELS, configure_logging

    level = args.log_level or env.log_level or _QUIET_COMMANDS.get(args.command, "info")
    fmt = args.log_format or env.log_format or "json"
    try:
        configure_logging(level, fmt=fmt, stream=CURRENT_STDERR)
    except ValueError as exc:  # argparse checked the flags: a bad value comes from the environment
        source = LOG_LEVEL_ENV if level.lower() not in LOG_LEVELS else LOG_FORMAT_ENV
        raise UsageError(f"{source}: {exc}") from None


def _check_config(args: argparse.Namespace, _env: Environment) -> int:
    from sidecar.config import load_config, summarize

    print(summarize(load_config(args.path)))  # a ConfigError prints one line per problem, exit 2
    return ExitCode.OK
