"""`qwen-tui`: attach the dashboard to a daemon's socket.

Locally, over `ssh -t hemma qwen-tui`, or against a forwarded socket
(`--socket`). The default socket path is the daemon's own default
(`qwen_daemon.protocol.socket.default_socket`), so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from qwen_daemon.protocol.socket import SOCKET_ENV, SocketPathError, check_socket_path, default_socket
from qwen_train.closed_pipe import quiet_on_closed_pipe
from qwen_train.spec import SpecError, check_name


def _socket(value: str) -> Path:
    try:
        return check_socket_path(Path(value).expanduser())
    except SocketPathError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run_name(value: str) -> str:
    try:
        return check_name(value)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _interval(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0.1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"refresh interval must be between 0.1 and 3600 s, got {value}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwen-tui",
        description="Terminal dashboard for the qwen-hemma daemon: runs, a run's detail, lanes and surfaces, "
        "the host.",
        epilog="Keys: Enter opens a run; s stops, R resumes, d diagnoses it; n launches a spec file; "
        "l shows lanes and surfaces, h the host (p probes the bind roots); every action asks first. "
        "r refreshes, Escape goes back, q quits.",
    )
    parser.add_argument(
        "--socket",
        type=_socket,
        default=None,
        metavar="PATH",
        help=f"the daemon's Unix socket (default: ${SOCKET_ENV}, else the daemon's default "
        f"under $XDG_STATE_HOME or ~/.local/state; here: {default_socket()})",
    )
    parser.add_argument("--run", type=_run_name, default=None, metavar="NAME", help="open this run's detail")
    parser.add_argument(
        "--interval",
        type=_interval,
        default=1.0,
        metavar="SECONDS",
        help="how often to poll the daemon (default: 1.0)",
    )
    return parser


@quiet_on_closed_pipe
def main(argv: Sequence[str] | None = None) -> int:
    """The entry point; a closed stdout ends it quietly (exit 141) instead of in a BrokenPipeError traceback."""
    args = build_parser().parse_args(argv)
    socket_path: Path = args.socket if args.socket is not None else default_socket()
    # Imported here so `--help` and argument errors do not pay for loading Textual.
    from qwen_tui.app import HemmaApp

    HemmaApp(socket_path, refresh_interval=args.interval, initial_run=args.run).run()
    return 0
