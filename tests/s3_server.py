"""A real S3-compatible server for the tests and benchmarks: moto's standalone server over HTTP.

    with MotoServer() as s3:
        bucket = s3.bucket()                 # a fresh, empty bucket
        Store(f"s3://{bucket}/farm", s3.options())
        s3.env()                             # FARM_STORE_OPTIONS for worker processes

`TcpRelay` sits between the farm and the server so a test can take the endpoint away and
bring it back: moto keeps its objects in memory, so killing the server itself would lose them,
where a real S3 server would keep them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from producer.redis_local import free_port

CREDENTIALS = {"key": "farm-test-key", "secret": "farm-test-secret"}


def moto_binary() -> str | None:
    beside = Path(sys.executable).parent / "moto_server"
    return str(beside) if beside.exists() else shutil.which("moto_server")


class MotoServer:
    def __init__(self, port: int | None = None, env: dict[str, str] | None = None):
        self.port = port or free_port()
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.log = Path(tempfile.mkdtemp(prefix="sekfarm-moto-")) / "moto.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def options(self, endpoint: str | None = None) -> dict:
        return {"endpoint_url": endpoint or self.endpoint, **CREDENTIALS}

    def farm_env(self, endpoint: str | None = None) -> dict[str, str]:
        """What a farm process needs to use this server (no shared directory, no AWS config)."""
        return {"FARM_STORE_OPTIONS": json.dumps(self.options(endpoint))}

    def start(self, timeout: float = 60.0) -> MotoServer:
        binary = moto_binary()
        if binary is None:
            raise RuntimeError("moto_server not found: pip install 'moto[server]'")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(self.port)], stdout=out,
                                         stderr=subprocess.STDOUT, env={**os.environ, **self.env},
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited at start: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto_server did not listen on {self.port} within {timeout:.0f} s")

    def bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random one by default) and return its name."""
        import s3fs

        name = name or f"farm-{uuid.uuid4().hex[:12]}"
        fs = s3fs.S3FileSystem(endpoint_url=self.endpoint, skip_instance_cache=True, **CREDENTIALS)
        fs.mkdir(name)
        return name

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class TcpRelay:
    """Forwards 127.0.0.1:port to a target port; `down()` closes the listener and every open
    connection (clients see refused connections), `up()` listens again on the same port."""

    def __init__(self, target_port: int, port: int | None = None):
        self.target, self.port = target_port, port or free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> TcpRelay:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def down(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            conns, self._conns = self._conns, []
        if server is not None:
            server.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._server is not server:
                    client.close(), upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
