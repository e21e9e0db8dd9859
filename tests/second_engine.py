"""A second Docker engine on this machine, standing in for another host's.

    with DockerEngine() as engine:       # its own dockerd: socket, data-root, exec-root, pidfile
        engine.load_image("sekfarm-dash:latest")
        engine.url                       # unix:///tmp/sekd-xxxx/docker.sock, for FARM_DOCKER_URL

Like the engine scripts/setup starts, it has no bridge and touches no iptables: sandboxes use
no network. It shares nothing with the first engine but the kernel.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path


class DockerEngine:
    def __init__(self):
        # Short: a unix socket path must fit in 108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="sekd-", dir="/tmp"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.dir}/docker.sock"

    def docker(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", self.url, *args], capture_output=True, text=True, **kw)

    def start(self, timeout: float = 60.0) -> DockerEngine:
        cmd = ["dockerd", "--host", self.url, "--data-root", str(self.dir / "data"), "--exec-root",
               str(self.dir / "exec"), "--pidfile", str(self.dir / "docker.pid"), "--bridge=none",
               "--iptables=false", "--ip6tables=false"]
        with open(self.dir / "dockerd.log", "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited at start: {self.log_tail()}")
            if self.docker("info", timeout=10).returncode == 0:
                return self
            time.sleep(0.3)
        raise RuntimeError(f"dockerd did not answer within {timeout:.0f} s: {self.log_tail()}")

    def load_image(self, tag: str) -> None:
        """Copy an image from the default engine: `docker save | docker -H ... load`."""
        save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "-H", self.url, "load"], stdin=save.stdout, capture_output=True, timeout=300)
        save.stdout.close()
        if save.wait(60) != 0 or load.returncode != 0:
            raise RuntimeError(f"could not load {tag} into the second engine: {load.stderr.decode()[-500:]}")

    def log_tail(self, n: int = 20) -> str:
        path = self.dir / "dockerd.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # a clean shutdown unmounts its layers
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> DockerEngine:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
