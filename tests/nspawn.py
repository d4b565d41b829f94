"""Real systemd as PID 1 in a `systemd-nspawn` container, for the unit-file tests.

Not a test module. The container boots the host's own /usr with a tmpfs root
(--volatile=yes), so nothing on the host changes; /etc/systemd/system is a
directory the test fills (the repo's units plus drop-ins that point them at
this checkout), the repo's sysusers file creates the qwen user at boot, and
the repo, the venv's base interpreter and a scratch dir are bound in. It is
driven with `nsenter` into the container's namespaces (no machined or D-Bus
on the host). Boot takes about two seconds.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def machine_name(units: Path) -> str:
    """A hostname-valid name per test dir: mkdtemp's names hold `_`, and one mapped to a trailing `-` was refused."""
    return "qh-" + hashlib.sha256(str(units).encode()).hexdigest()[:12]


class Machine:
    def __init__(self, units: Path, binds: list[tuple[Path, str]], log: Path) -> None:
        self.units = units
        self.log_path = log
        args = [
            "systemd-nspawn", "--directory=/", "--volatile=yes", "--boot", "--register=no", "--keep-unit",
            f"--machine={machine_name(units)}", f"--bind-ro={units}:/etc/systemd/system",
            f"--bind-ro={REPO / 'systemd' / 'qwen-hemma.sysusers.conf'}:/etc/sysusers.d/qwen-hemma.conf",
        ]
        for host, inside in binds:
            args.append(f"--bind={host}:{inside}")
        base = Path(sys.base_prefix).resolve()
        if base.is_relative_to("/root"):
            # systemd-tmpfiles makes /root 0700 at boot, which would hide the interpreter from
            # the qwen user: give /root a read-only 0755 skeleton holding just the mount point.
            skeleton = units.parent / "root-skeleton"
            (skeleton / base.relative_to("/root")).mkdir(parents=True, exist_ok=True)
            for path in [skeleton, *skeleton.rglob("*")]:
                path.chmod(0o755)
            args.append(f"--bind-ro={skeleton}:/root")
        for path in (str(REPO), str(base)):
            args.append(f"--bind-ro={path}")
        args += ["systemd.firstboot=off", "systemd.mask=console-getty.service", "systemd.mask=systemd-logind.service"]
        self._log = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self.leader = self._wait_leader()

    def _wait_leader(self) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited: {self.log()}")
            children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True,
                                      text=True, check=False).stdout.split()
            if children:
                leader = int(children[0])
                state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return leader
            time.sleep(0.2)
        raise RuntimeError(f"the container did not finish booting: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def run(self, *argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True,
                                  text=True, check=False).stdout.split()
        leader = getattr(self, "leader", None) or (int(children[0]) if children else 0)
        result = subprocess.run(["nsenter", "-t", str(leader), "-a", *argv], capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}): {result.stdout}{result.stderr}")
        return result

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def host_path(self, inside: str) -> Path:
        """A path inside the container, seen from the host (through its init's root)."""
        return Path(f"/proc/{self.leader}/root{inside}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def install_units(units: Path, daemon_args: list[str]) -> None:
    """The repo's unit files, with drop-ins pointing them at this checkout (paths only)."""
    units.mkdir(parents=True, exist_ok=True)
    for name in ("qwen-daemon.service", "qwen-run@.service"):
        shutil.copy(REPO / "systemd" / name, units / name)
    venv = REPO / ".venv" / "bin" / "qwen-daemon"
    # PrivateTmp= gives the units a fresh /tmp: a checkout (or interpreter) living under /tmp, as a CI clone
    # may, would vanish inside them. Bind those paths back in; elsewhere this changes nothing.
    keep = " ".join(sorted({str(REPO), str(Path(sys.base_prefix).resolve())}))
    visible = f"BindReadOnlyPaths={keep}\n"
    daemon = units / "qwen-daemon.service.d"
    daemon.mkdir()
    (daemon / "checkout.conf").write_text(
        "[Service]\nExecStart=\n"
        f"ExecStart={venv} serve --state-dir /var/lib/qwen-hemma --socket /run/qwen-hemma/daemon.sock "
        f"--socket-group qwen {' '.join(daemon_args)}\n"
        "WatchdogSec=3\nTimeoutAbortSec=2\nSupplementaryGroups=\n" + visible
    )
    run = units / "qwen-run@.service.d"
    run.mkdir()
    (run / "checkout.conf").write_text(
        f"[Service]\nExecStart=\nExecStart={venv} unit-run %i --spec-dir /etc/qwen-hemma/runs\n"
        f"ExecStop=\nExecStop={venv} stop %i --wait --wait-timeout 60\n" + visible
    )
