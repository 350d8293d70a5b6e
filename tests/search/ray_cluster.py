"""A real two-node Ray cluster on this machine, reachable only on loopback, for tests.

Everything runs inside a private network namespace that has nothing but `lo` (`unshare -n`,
then `ip link set lo up`), so no Ray server ever listens on the machine's real interfaces.
A bounded `sleep` holds the namespace open; the head and the worker node are two
`ray start --block` processes entered into it with `nsenter`, each in its own session so that
stopping one is a signal to its own process group, never `ray stop` or a kill by name.
Commands that must reach the cluster (the `nas search` driver) run through `run`/`popen`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

HEAD_PORT = 6390
# Fast node-death detection, so the fault test does not wait the default ~30 s.
HEALTH_ENV = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}

_NODES_CODE = (
    "import json, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
    "print(json.dumps([{'id': n['NodeID'], 'cpu': n['Resources'].get('CPU', 0)} for n in ray.nodes() if n['Alive']]))"
)


def with_token_auth(env: dict[str, str], folder: Path) -> dict[str, str]:
    """Ray token authentication with a token of our own: as a real cluster should run, and Ray
    then never writes (or reads) ~/.ray/auth_token, which other users of this machine share."""
    token = folder / "auth_token"
    if not token.is_file():
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
    return dict(env, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))


def namespaces_available() -> bool:
    """True when this process may create network namespaces (root, or unprivileged userns)."""
    if shutil.which("unshare") is None or shutil.which("nsenter") is None or shutil.which("ip") is None:
        return False
    try:
        done = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


class LoopbackCluster:
    """Head + one worker node, 1 CPU each, in a loopback-only network namespace."""

    def __init__(self, env: dict[str, str], lifetime_s: int = 900) -> None:
        self.lifetime_s = lifetime_s
        self.temp_dir = Path(tempfile.mkdtemp(prefix="nasray"))  # short: Ray's socket paths are limited
        self.env = with_token_auth(env, self.temp_dir)
        self.holder: subprocess.Popen | None = None
        self.head: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.address = f"127.0.0.1:{HEAD_PORT}"

    # -- namespace -------------------------------------------------------------------------
    def _enter(self, argv: Sequence[str]) -> list[str]:
        assert self.holder is not None
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--", *argv]

    def run(self, argv: Sequence[str], *, cwd: Path | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a command inside the namespace and wait for it."""
        return subprocess.run(self._enter(argv), cwd=cwd, env=env or self.env, capture_output=True,
                              text=True, timeout=timeout)

    def popen(self, argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
              log: Path | None = None) -> subprocess.Popen:
        """Start a command inside the namespace in its own session (stop it with `stop`)."""
        out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
        return subprocess.Popen(self._enter(argv), cwd=cwd, env=env or self.env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)

    # -- nodes -----------------------------------------------------------------------------
    def _ray(self, *args: str) -> list[str]:
        ray = str(Path(sys.executable).with_name("ray"))
        return [ray, "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0",
                "--object-store-memory", str(80 * 1024 * 1024), "--disable-usage-stats", *args]

    def start(self, timeout: float = 120) -> None:
        self.holder = subprocess.Popen(["unshare", "-n", "--", "sleep", str(self.lifetime_s)],
                                       start_new_session=True)
        deadline = time.time() + 10
        while not Path(f"/proc/{self.holder.pid}/ns/net").exists() or self._same_netns():
            if time.time() > deadline:
                raise RuntimeError("the network namespace did not come up")
            time.sleep(0.05)
        up = self.run(["ip", "link", "set", "lo", "up"], timeout=10)
        if up.returncode != 0:
            raise RuntimeError(f"cannot bring up loopback in the namespace: {up.stderr.strip()}")
        head_env = dict(self.env, **HEALTH_ENV)
        self.head = self.popen(
            self._ray("--head", "--port", str(HEAD_PORT), "--include-dashboard", "false",
                      "--dashboard-agent-listen-port", "52365", "--temp-dir", str(self.temp_dir)),
            env=head_env, log=self.temp_dir / "head.log")
        self.wait_for_nodes(1, timeout)
        self.start_worker(timeout)

    def _same_netns(self) -> bool:
        assert self.holder is not None
        try:
            return os.readlink(f"/proc/{self.holder.pid}/ns/net") == os.readlink("/proc/self/ns/net")
        except OSError:
            return True

    def start_worker(self, timeout: float = 120) -> None:
        alive = len(self.nodes())
        self.worker = self.popen(
            self._ray("--address", self.address, "--dashboard-agent-listen-port", "52366"),
            log=self.temp_dir / "worker.log")
        self.wait_for_nodes(alive + 1, timeout)

    def nodes(self) -> list[dict]:
        """Alive nodes as the cluster sees them (NodeID, CPU), from a short client in the namespace."""
        done = self.run([sys.executable, "-c", _NODES_CODE, self.address], timeout=60)
        if done.returncode != 0:
            return []
        return json.loads(done.stdout.strip().splitlines()[-1])

    def wait_for_nodes(self, count: int, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.head is not None and self.head.poll() is not None:
                raise RuntimeError(f"ray head exited: {(self.temp_dir / 'head.log').read_text()[-2000:]}")
            if len(self.nodes()) >= count:
                return
            time.sleep(1)
        raise RuntimeError(f"the Ray cluster did not reach {count} nodes in {timeout:.0f} s")

    def kill_worker(self) -> None:
        """The worker node dies: SIGKILL to its own process group (raylet and its workers)."""
        stop(self.worker, sig=signal.SIGKILL)
        self.worker = None

    def stop(self) -> None:
        for proc in (self.worker, self.head, self.holder):
            stop(proc, grace=5)
        self.worker = self.head = self.holder = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def descendants(pid: int) -> list[int]:
    """Process ids started, directly or not, by `pid` (from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, grace: float = 15) -> None:
    """Stop a process we started and everything it started, by their ids.

    Ray's worker processes start their own sessions, so signalling the process group is not
    enough: their ids are collected from /proc first and killed after the group is down.
    """
    if proc is None:
        return
    tree = descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def loopback_cluster(env: dict[str, str]) -> Iterator[LoopbackCluster]:
    cluster = LoopbackCluster(env)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
