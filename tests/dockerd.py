"""A private dockerd for the tests, and a tiny training image imported from a local rootfs.

Not a test module. The engine runs with its own data root, exec root and
socket under /tmp, no bridge and no iptables (it touches nothing of the
host's networking), overlay2 or vfs where overlay is unavailable. The image
is a few kilobytes: directory skeleton, /etc/passwd with a non-root user, the
loader cache; the host's /usr, the Python installation the venv was made
from (sys.base_prefix) and the repository (with .venv) are bind-mounted
read-only at run time as the daemon's runtime mounts.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parent.parent
IMAGE = "qwen-hemma-test:rootfs"
USER = "1000:1000"


@dataclass
class Engine:
    root: Path
    socket: Path
    proc: subprocess.Popen[bytes]
    client: docker.DockerClient
    driver: str

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def runtime_mounts(self) -> list[str]:
        return ["/usr", str(Path(sys.base_prefix).resolve()), str(REPO)]

    def python(self) -> str:
        return str(REPO / ".venv" / "bin" / "python")

    def stop(self) -> None:
        try:
            for box in self.client.containers.list(all=True):
                box.remove(force=True)
        finally:
            self.client.close()
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            subprocess.run(["umount", "-R", "-l", str(self.root / "data")], capture_output=True, check=False)
            shutil.rmtree(self.root, ignore_errors=True)


def _start(root: Path, driver: str) -> Engine | None:
    sock = root / "d.sock"
    log = open(root / f"dockerd-{driver}.log", "wb")  # noqa: SIM115 (lives as long as the engine)
    proc = subprocess.Popen(
        ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver", driver,
         "--data-root", str(root / "data"), "--exec-root", str(root / "exec"), "--pidfile", str(root / "pid"),
         "-H", f"unix://{sock}", "--containerd-namespace", f"qh{os.getpid()}",
         "--containerd-plugins-namespace", f"qhp{os.getpid()}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if sock.exists():
            client = docker.DockerClient(base_url=f"unix://{sock}", timeout=120)
            try:
                client.ping()
                return Engine(root, sock, proc, client, driver)
            except docker.errors.DockerException:
                client.close()
        time.sleep(0.1)
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=20)
    return None


def start_engine() -> Engine:
    """overlay2 first; vfs where overlay cannot be mounted (nested overlay, odd filesystems)."""
    root = Path(tempfile.mkdtemp(prefix="qdk-", dir="/tmp"))
    for driver in ("overlay2", "vfs"):
        engine = _start(root, driver)
        if engine is not None:
            import_image(engine.client)
            return engine
    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in root.glob("dockerd-*.log"))
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"the test dockerd did not start:\n{logs}")


def _rootfs() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        def add_link(name: str, target: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)

        for name in ("usr", "etc", "proc", "sys", "dev", "run", "var", "sbin"):  # docker-init goes to /sbin
            add_dir(name)
        add_dir("tmp", 0o1777)
        for name in ("bin", "lib", "lib64"):
            add_link(name, f"usr/{name}")
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\ntrainer:x:1000:1000:trainer:/tmp:/bin/sh\n")
        add_file("etc/group", b"root:x:0:\ntrainer:x:1000:\n")
        add_file("etc/ld.so.cache", Path("/etc/ld.so.cache").read_bytes())
    return buf.getvalue()


def import_image(client: docker.DockerClient) -> None:
    client.api.import_image_from_data(_rootfs(), repository=IMAGE.split(":")[0], tag=IMAGE.split(":")[1])
