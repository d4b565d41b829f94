"""`qwen-daemon gpu status | reserve --reason WHY | release`: the shared card's holders and its reservation."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from qwen_daemon.protocol.client import DaemonClient, DaemonError
from qwen_daemon.protocol.display import PLAIN
from qwen_daemon.protocol.gpu import GpuHolder, GpuStatus
from qwen_daemon.protocol.gpu_text import gpu_line
from qwen_daemon.protocol.resources import gpu_backend_text
from qwen_daemon.protocol.socket import default_socket


def _holder(holder: GpuHolder) -> str:
    who = f"run {holder.run}" if holder.run else (
        f"container {holder.container[:12]}" if holder.container else (holder.command or "a process"))
    return f"  GPU{holder.gpu}  pid {holder.pid:<8} {PLAIN.size(holder.vram_bytes):>10}  {who}"


def status_text(status: GpuStatus) -> str:
    lines = [f"reader: {gpu_backend_text(status.backend)}"]
    if status.note:
        lines.append(f"note: {status.note}")
    lines += [f"GPU{gpu.index} {gpu_line(gpu, PLAIN, free=True)}" for gpu in status.gpus]
    if not status.gpus:
        lines.append("no GPU read")
    lines.append("holders:" if status.holders else "holders: none")
    lines += [_holder(h) for h in status.holders]
    held = status.reservation
    lines.append(f"reserved by {held.actor} since {PLAIN.timestamp(held.since)}: {held.reason}" if held
                 else "not reserved: GPU runs may start when they fit")
    if status.queued:
        lines.append(f"queued for the GPU: {', '.join(status.queued)}")
    return "\n".join(lines)


def run_gpu(args: argparse.Namespace) -> int:
    client = DaemonClient(args.socket or default_socket())
    try:
        answer: Any
        if args.action == "reserve":
            answer = client.gpu_reserve(args.reason)
        elif args.action == "release":
            answer = client.gpu_release()
        else:
            answer = client.gpu_status()
    except DaemonError as exc:
        print(f"qwen-daemon: error: {exc}", file=sys.stderr)
        return 1
    print(msgspec.json.format(msgspec.json.encode(answer)).decode() if args.json else status_text(answer))
    return 0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("gpu", parents=[common], help="the shared GPU: holders, reservation, queue")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("status", parents=[common], help="each GPU's memory, who holds it, any reservation")
    reserve = actions.add_parser("reserve", parents=[common],
                                 help="keep GPU runs from starting (audited), e.g. while the speech sidecar serves")
    reserve.add_argument("--reason", required=True, help="why: goes into the audit log")
    actions.add_parser("release", parents=[common], help="end the reservation (audited)")
    p.set_defaults(func=run_gpu)
