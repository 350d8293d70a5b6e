"""A throw-away PostgreSQL server on loopback for tests: initdb in a temp folder, started as
the `postgres` user (the server refuses root), stopped by its own process id."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def available() -> bool:
    return all(find_bin(n) for n in ("initdb", "postgres")) and shutil.which("runuser") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        # pytest's tmp folders (and a test session's own TMPDIR) are private to root; the server
        # runs as `postgres`, so its folder lives in the system's shared temp folder
        self.folder = Path(tempfile.mkdtemp(prefix="nas-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://nas@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd]

    def start(self, timeout: float = 60) -> None:
        data = self.folder / "pgdata"
        os.chmod(self.folder, 0o777)
        subprocess.run(
            self._as_postgres(find_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "nas", "--no-sync"),
            check=True, capture_output=True, timeout=120,
        )
        self.proc = subprocess.Popen(
            self._as_postgres(find_bin("postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port),
                              "-k", str(self.folder), "-c", "fsync=off"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    time.sleep(0.5)  # accepting TCP slightly before it accepts logins
                    return
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited during start-up")
            time.sleep(0.2)
        raise TimeoutError("postgres did not start")

    def stop(self) -> None:
        try:
            self._stop_server()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _stop_server(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # runuser forwards signals to the server; SIGINT is PostgreSQL's "fast" shutdown
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
