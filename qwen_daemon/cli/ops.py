"""`qwen-daemon` commands beyond runs: governance, lanes, bind roots and the systemd unit.

Split from cli.py to keep each module about one thing; cli.py wires these
parsers in. `classify` needs no daemon; everything else asks the daemon,
which owns the surfaces registry, its audit log and the bind-root config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, get_args

import msgspec

from qwen_daemon.cli.args import name_arg, surface_arg
from qwen_daemon.cli.render import table
from qwen_daemon.governance.lanes import LaneUnclear, classify
from qwen_daemon.protocol import AuditList, BindRootsView, ClassChange, ProbeView, Surface, SurfaceClass, SurfaceList
from qwen_daemon.protocol.client import DaemonClient, DaemonError
from qwen_daemon.protocol.display import PLAIN
from qwen_daemon.protocol.socket import default_socket
from qwen_daemon.systemd import run_unit


def _client(args: argparse.Namespace) -> DaemonClient:
    return DaemonClient(args.socket or default_socket(), timeout=getattr(args, "timeout", 10.0))


def _print(args: argparse.Namespace, answer: Any, text: str) -> None:
    print(msgspec.json.format(msgspec.json.encode(answer)).decode() if args.json else text)


def _surfaces_text(answer: Any) -> str:
    if isinstance(answer, SurfaceList):
        rows = [["SURFACE", "CLASS", "UNBLOCKED BY", "NOTES"]]
        rows += [[s.name, s.klass, s.unblocked_by or PLAIN.unknown, s.notes or PLAIN.unknown] for s in answer.surfaces]
        return table(rows) + f"\n({answer.path})"
    if isinstance(answer, AuditList):
        rows = [["WHEN", "SURFACE", "FROM", "TO", "BY", "REASON"]]
        rows += [[PLAIN.timestamp(e.time), e.surface, e.old_class or "(new)", e.new_class, e.actor, e.reason]
                 for e in answer.entries]
        return table(rows)
    if isinstance(answer, Surface):
        return f"surface {answer.name} is now {answer.klass}" + (f" (unblocked by {answer.unblocked_by})"
                                                                  if answer.unblocked_by else "")
    return str(answer)


def _roots_text(answer: Any) -> tuple[str, bool]:
    if isinstance(answer, BindRootsView):
        if not answer.roots:
            return "no bind roots configured (qwen-daemon serve --bind-root PATH[=SOURCE])", False
        lines = []
        for root in answer.roots:
            via = f" <- {root.source}" if root.source else ""
            lines.append(f"{'ok ' if root.ok else 'BAD'} {root.path}{via}")
            lines += [f"    {problem}" for problem in root.problems]
        return "\n".join(lines), all(root.ok for root in answer.roots)
    assert isinstance(answer, ProbeView)
    lines = [f"{'ok ' if r.ok else 'BAD'} {r.path}: {r.detail}" for r in answer.results]
    return "\n".join(lines), all(r.ok for r in answer.results)


def run_ops(args: argparse.Namespace) -> int:
    """Dispatch one of this module's commands; exit 0 ok, 1 daemon refused/unreachable or check failed."""
    if args.command == "classify":
        try:
            found = classify(" ".join(args.text))
        except LaneUnclear as exc:
            print(f"qwen-daemon: error: {exc}", file=sys.stderr)
            return 2
        _print(args, found, f"{found.lane}  (rule: {found.rule})")
        return 0
    client = _client(args)
    try:
        if args.command == "unit-run":
            return run_unit.follow(client, args.name, args.spec_dir)
        if args.command == "surfaces":
            answer: Any
            if args.action == "set-class":
                change = ClassChange(klass=args.klass, reason=args.reason, gate=args.gate, notes=args.notes)
                answer = client.set_class(args.name, change)
            else:
                answer = client.audit() if args.action == "audit" else client.surfaces()
            _print(args, answer, _surfaces_text(answer))
            return 0
        answer = client.probe() if args.action == "probe" else client.bind_roots()
        text, ok = _roots_text(answer)
        _print(args, answer, text)
        return 0 if ok else 1
    except DaemonError as exc:
        print(f"qwen-daemon: error: {exc}", file=sys.stderr)
        return 1


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("classify", help="map a request to its lane (no daemon needed)",
                       description="Map a request to its lane, e.g. `classify general Swedish support`.")
    p.add_argument("text", nargs="+", metavar="TEXT")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_ops)

    p = sub.add_parser("surfaces", parents=[common], help="list surfaces, change a class (audited), show the audit")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[common], help="the surfaces registry")
    actions.add_parser("audit", parents=[common], help="every class change: when, who, why")
    change = actions.add_parser("set-class", parents=[common], help="change (or register) a surface's class")
    change.add_argument("name", metavar="SURFACE", type=surface_arg)
    change.add_argument("klass", metavar="CLASS", choices=get_args(SurfaceClass))
    change.add_argument("--reason", required=True, help="why: goes into the audit log")
    change.add_argument("--gate", help="absolute path of a passed promotion-gate verdict (unblocks recovery)")
    change.add_argument("--notes", help="replace the surface's notes")
    p.set_defaults(func=run_ops)

    p = sub.add_parser("bind-roots", parents=[common], help="prove the bind roots are mounted and visible")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("status", parents=[common], help="each canonical tree is a mount of its source")
    actions.add_parser("probe", parents=[common], help="a container writes through Docker's view; read back here")
    p.set_defaults(func=run_ops)

    p = sub.add_parser("unit-run", parents=[common], help="(qwen-run@.service) launch or resume NAME and follow it")
    p.add_argument("name", metavar="NAME", type=name_arg)
    p.add_argument("--spec-dir", type=Path, default=run_unit.DEFAULT_SPEC_DIR,
                   help="where NAME.json lives (default: %(default)s)")
    p.set_defaults(func=run_ops)
