"""A private redis-server on a free loopback port, for the embedded run and the tests.

    with LocalRedis(data_dir) as r:
        r.url          # redis://127.0.0.1:PORT/0
        r.restart()    # same port and data: what was enqueued survives (appendonly)
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from producer.child_process import die_with_parent
from producer.errors import ProducerError


class RedisUnavailable(ProducerError, RuntimeError):
    """No redis-server binary, or it would not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRedis:
    """redis-server bound to 127.0.0.1 with append-only persistence in `data_dir`."""

    def __init__(self, data_dir: str | Path | None = None, port: int | None = None, appendonly: bool = True):
        self.binary = shutil.which("redis-server")
        if not self.binary:
            raise RedisUnavailable("redis-server not found: install it (Debian: `apt-get install redis-server`), "
                                   "or point FARM_BROKER_URL at a running Redis and use the workers directly")
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="sekfarm-redis-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "LocalRedis":
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
                "--save", "", "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning",
                "--logfile", str(self.data_dir / "redis.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RedisUnavailable(f"redis-server exited at start (see {self.data_dir / 'redis.log'})")
            if self.ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise RedisUnavailable(f"redis-server did not answer on port {self.port} within {timeout:.0f} s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        """Stop the server: SIGTERM (a clean shutdown) or SIGKILL (a crash: only the AOF survives)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self, kill: bool = True, down_s: float = 0.0) -> None:
        self.stop(kill=kill)
        time.sleep(down_s)
        self.start()

    def __enter__(self) -> "LocalRedis":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
