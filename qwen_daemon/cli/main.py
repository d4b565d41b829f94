"""`qwen-daemon`: serve the daemon, or talk to a running one.

  qwen-daemon serve [--state-dir D] [--socket S] [--socket-group G] [--sample-period X]
                    [--stale-after X] [--stop-timeout X] [--trainer-python P] [--log-level L]
  qwen-daemon runs               [--socket S] [--json]
  qwen-daemon show NAME          [--socket S] [--json]
  qwen-daemon launch SPEC_FILE   [--socket S] [--json]
  qwen-daemon stop NAME          [--socket S] [--json] [--wait [--wait-timeout X]]
  qwen-daemon resume NAME        [--socket S] [--json]
  qwen-daemon prepare SPEC_FILE  [--surface S] [--runner R]   (a preprocess job)
  qwen-daemon diagnose NAME      [--step N]   (replay an ended run: job NAME.diagnose)
  qwen-daemon gate NAME          [--asr DIR] [--verifier DIR] [--thresholds F] [--checkpoint N]   (job NAME.gate)
  qwen-daemon verdict NAME       [--json]   (the gate's verdict, criterion by criterion)
  qwen-daemon scores NAME        [--json]   (listening scores by checkpoint, the base row, the best marked)
  qwen-daemon history NAME       [--json]
  qwen-daemon host               [--socket S] [--json]
  qwen-daemon disk               [--socket S] [--json]
  qwen-daemon surfaces list|audit|set-class SURFACE CLASS --reason WHY [--gate VERDICT]
  qwen-daemon bind-roots status|probe
  qwen-daemon classify TEXT...   (no daemon needed)
  qwen-daemon unit-run NAME      [--spec-dir D]   (what qwen-run@NAME.service runs)

Client commands find the daemon at --socket, else $QWEN_DAEMON_SOCKET, else
the default state dir's daemon.sock. Exit status: 0 done, 1 the daemon
refused or could not be reached, 2 bad usage or a bad spec file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from qwen_daemon import __version__
from qwen_daemon.cli import gpu as cli_gpu
from qwen_daemon.cli import jobs as cli_jobs
from qwen_daemon.cli import ops as cli_ops
from qwen_daemon.cli import render
from qwen_daemon.cli import scores as cli_scores
from qwen_daemon.cli.args import name_arg
from qwen_daemon.cli.disk import disk_text
from qwen_daemon.config import DEFAULT_JOURNAL_SOCKET, BindRoot, ConfigError, DaemonConfig, DockerSettings
from qwen_daemon.protocol import GateVerdict, HostView, RunDetail, RunHistory, RunList, RunScores, RunView
from qwen_daemon.protocol.client import DaemonClient, DaemonError
from qwen_daemon.protocol.disk import DiskView
from qwen_daemon.protocol.socket import SOCKET_ENV, default_socket, default_state_dir
from qwen_daemon.runs.registry_file import RegistryError, RegistryFull
from qwen_daemon.systemd import run_unit
from qwen_train.closed_pipe import quiet_on_closed_pipe
from qwen_train.spec import SpecError, load_spec

EXIT_OK = 0
EXIT_DAEMON = 1
EXIT_USAGE = 2


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def _serve_parser(sub: Any) -> None:
    defaults = DaemonConfig(state_dir="")
    p = sub.add_parser("serve", help="run the daemon in the foreground", description="Run the daemon.")
    p.add_argument("--state-dir", type=Path, default=default_state_dir(),
                   help="registry, run dirs and socket live here (default: %(default)s)")
    p.add_argument("--socket", type=Path, default=None,
                   help=f"Unix socket path, under 108 bytes (default: ${SOCKET_ENV}, else STATE_DIR/daemon.sock)")
    p.add_argument("--socket-group", default="",
                   help="group that may use the socket (mode 0660; default: the daemon's group)")
    p.add_argument("--sample-period", type=_seconds, default=defaults.sample_period_s,
                   help="seconds between resource samples (default: %(default)s)")
    p.add_argument("--stale-after", type=_seconds, default=defaults.stale_after_s,
                   help="a heartbeat older than this many seconds is stale (default: %(default)s)")
    p.add_argument("--stop-timeout", type=_seconds, default=defaults.stop_timeout_s,
                   help="seconds from SIGTERM to SIGKILL when stopping a run (default: %(default)s)")
    p.add_argument("--trainer-python", default=defaults.trainer_python,
                   help="interpreter that runs `-m qwen_train` (default: %(default)s)")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="run dirs live here (default: STATE_DIR/runs; docker runs need it under a bind root)")
    p.add_argument("--surfaces", type=Path, default=None,
                   help="surfaces registry file (default: STATE_DIR/surfaces.json)")
    p.add_argument("--journal-socket", default=DEFAULT_JOURNAL_SOCKET,
                   help="journald socket for sample records; '' turns them off (default: %(default)s)")
    p.add_argument("--bind-root", action="append", default=[], type=_bind_root, metavar="PATH[=SOURCE]",
                   help="a tree training containers may see; SOURCE: the home-dir bind source mounted onto it")
    docker = DockerSettings()
    p.add_argument("--docker-host", default="", help="Docker socket URL (default: $DOCKER_HOST or the system one)")
    p.add_argument("--docker-image", default=docker.image, help="training image (default: %(default)s)")
    p.add_argument("--docker-gpus", default=docker.gpus, choices=["none", "nvidia", "rocm"],
                   help="GPUs for containers (default: %(default)s)")
    p.add_argument("--docker-user", default="", help="UID:GID in containers (default: the daemon's, never root)")
    p.add_argument("--docker-python", default=docker.python,
                   help="interpreter inside the image (default: %(default)s)")
    p.add_argument("--docker-network", default=docker.network, help="container network (default: %(default)s)")
    p.add_argument("--docker-runtime-mount", action="append", default=[], metavar="PATH",
                   help="host path mounted read-only at the same path (a development venv)")
    p.add_argument("--gate-asr", type=Path, default=None, metavar="DIR",
                   help="ASR model dir a promotion gate uses when its request names none (the dashboard's)")
    p.add_argument("--gate-verifier", type=Path, default=None, metavar="DIR",
                   help="speaker-verification model dir a gate uses when its request names none "
                        "(default: the gate's own resemblyzer)")
    p.add_argument("--gate-thresholds", type=Path, default=None, metavar="FILE",
                   help="gate thresholds JSON used when a gate request names none")
    p.add_argument("--gpu-admission", default="refuse", choices=["refuse", "queue"],
                   help="a GPU run that does not fit the card's free memory, or meets a reservation: refuse it, "
                        "or queue it until it fits (default: %(default)s)")
    p.add_argument("--disk-admission", default="refuse", choices=["refuse", "queue"],
                   help="a training run whose disk plan (kept checkpoints, the one being written, an export) does "
                        "not fit its run dir's free space: refuse it, or queue it until it fits "
                        "(default: %(default)s)")
    p.add_argument("--gpu-root", type=Path, default=None, metavar="DIR",
                   help="read sysfs, /proc and /dev under DIR instead of / (a recorded tree; implies no NVML)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=_serve)


def _bind_root(text: str) -> BindRoot:
    path, _, source = text.partition("=")
    if not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not PATH or PATH=SOURCE")
    return BindRoot(path=str(Path(path).absolute()), source=str(Path(source).absolute()) if source else "")


def _client_parsers(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--socket", type=Path, default=None,
                        help=f"daemon socket (default: ${SOCKET_ENV}, else {default_socket()})")
    common.add_argument("--json", action="store_true", help="print the daemon's JSON answer")
    commands: list[tuple[str, str, str | None, Callable[[DaemonClient, argparse.Namespace], Any]]] = [
        ("runs", "list runs", None, lambda c, a: c.runs()),
        ("show", "show one run: status, resource summary, events", "NAME", lambda c, a: c.run(a.name)),
        ("launch", "launch the run a spec file describes", "SPEC_FILE", _launch),
        ("stop", "stop a run gracefully (SIGTERM, then SIGKILL after the timeout)", "NAME", _stop),
        ("resume", "launch an ended run again (from its newest durable checkpoint, or journal)", "NAME",
         lambda c, a: c.resume(a.name)),
        ("host", "host resources and sampler liveness", None, lambda c, a: c.host()),
        ("disk", "free space of the runs dir, the state dir and the bind roots; failing state writes", None,
         lambda c, a: c.disk()),
    ]
    for name, text, arg, call in commands:
        p = sub.add_parser(name, parents=[common], help=text, description=text[0].upper() + text[1:] + ".")
        if arg == "NAME":
            p.add_argument("name", metavar="NAME", type=name_arg, help="run name")
        if name == "stop":
            p.add_argument("--wait", action="store_true", help="return once the run has ended (checkpointed)")
            p.add_argument("--wait-timeout", type=_seconds, default=3600.0, help="give up waiting after X s")
        elif arg == "SPEC_FILE":
            p.add_argument("spec_file", metavar="SPEC_FILE", type=Path,
                           help="run spec JSON; relative paths in it resolve against the file")
        p.set_defaults(func=_client_command(call))
    cli_jobs.add_parsers(sub, common, _client_command)
    cli_scores.add_parser(sub, common, _client_command)
    cli_ops.add_parsers(sub, common)
    cli_gpu.add_parser(sub, common)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qwen-daemon", description="The qwen-hemma run daemon and its client.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parser(sub)
    _client_parsers(sub)
    return parser


def _fail(code: int, message: str) -> int:
    print(f"qwen-daemon: error: {message}", file=sys.stderr)
    return code


def _serve(args: argparse.Namespace) -> int:
    from qwen_daemon.service import Daemon  # the client commands need none of the server

    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env_socket = os.environ.get(SOCKET_ENV)
    socket = args.socket or (Path(env_socket) if env_socket else None)
    config = DaemonConfig(
        state_dir=str(args.state_dir.absolute()),
        socket_path=str(socket.absolute()) if socket else "",
        sample_period_s=args.sample_period,
        stale_after_s=args.stale_after,
        stop_timeout_s=args.stop_timeout,
        trainer_python=args.trainer_python,
        socket_group=args.socket_group,
        runs_path=str(args.runs_dir.absolute()) if args.runs_dir else "",
        surfaces_path=str(args.surfaces.absolute()) if args.surfaces else "",
        journal_socket=args.journal_socket,
        bind_roots=args.bind_root,
        gate_asr=str(args.gate_asr.absolute()) if args.gate_asr else "",
        gate_verifier=str(args.gate_verifier.absolute()) if args.gate_verifier else "",
        gate_thresholds=str(args.gate_thresholds.absolute()) if args.gate_thresholds else "",
        gpu_admission=args.gpu_admission,
        disk_admission=args.disk_admission,
        gpu_root=str(args.gpu_root.absolute()) if args.gpu_root else "",
        docker=DockerSettings(
            host=args.docker_host, image=args.docker_image, gpus=args.docker_gpus, user=args.docker_user,
            python=args.docker_python, network=args.docker_network, runtime_mounts=args.docker_runtime_mount,
        ),
    )
    try:
        daemon = Daemon(config)
        daemon.run_until_signalled(lambda: print(f"qwen-daemon serving on {config.socket}", flush=True))
    except RegistryFull as exc:  # the disk's state, not the operator's arguments: systemd retries on failure
        return _fail(EXIT_DAEMON, str(exc))
    except (ConfigError, RegistryError) as exc:
        return _fail(EXIT_USAGE, str(exc))
    except OSError as exc:
        return _fail(EXIT_DAEMON, f"cannot serve: {exc}")
    return EXIT_OK


def _stop(client: DaemonClient, args: argparse.Namespace) -> Any:
    if args.wait:
        code = run_unit.stop_and_wait(client, args.name, args.wait_timeout)
        raise SystemExit(code)
    return client.stop(args.name)


def _launch(client: DaemonClient, args: argparse.Namespace) -> Any:
    return client.launch(spec=load_spec(args.spec_file))


def _client_command(call: Callable[[DaemonClient, argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        client = DaemonClient(args.socket or default_socket())
        try:
            answer = call(client, args)
        except SpecError as exc:
            return _fail(EXIT_USAGE, str(exc))
        except DaemonError as exc:
            return _fail(EXIT_DAEMON, str(exc))
        print(msgspec.json.format(msgspec.json.encode(answer)).decode() if args.json else _text(answer))
        return EXIT_OK

    return run


def _text(answer: Any) -> str:
    if isinstance(answer, RunList):
        return render.runs_table(answer.runs)
    if isinstance(answer, RunDetail):
        return render.detail_text(answer)
    if isinstance(answer, RunView):
        return render.runs_table([answer])
    if isinstance(answer, HostView):
        return render.host_view(answer)
    if isinstance(answer, DiskView):
        return disk_text(answer)
    if isinstance(answer, RunHistory):
        return cli_jobs.history_text(answer)
    if isinstance(answer, GateVerdict):
        return cli_jobs.verdict_text(answer)
    if isinstance(answer, RunScores):
        return cli_scores.scores_text(answer)
    return str(answer)


@quiet_on_closed_pipe
def main(argv: Sequence[str] | None = None) -> int:
    """The entry point; a reader that goes away (`qwen-daemon show NAME | head`) ends it quietly (exit 141)."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
