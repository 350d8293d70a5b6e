"""Joining a Ray cluster (or starting a private local Ray) and fitting trials onto its nodes."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any

import ray

from nas.search.failure import failure_reason
from nas.spec.errors import ConfigError, RunError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayOptions:
    """How trials are placed on the cluster (`nas search --backend ray ...`)."""

    address: str | None = None  # None: start a local Ray on this machine
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None  # None: as many as the cluster's resources allow
    asha: bool = True
    max_failures: int = 2
    storage: str | None = None  # shared path/URI for Ray's experiment; default runs/<name>/ray

    def check(self) -> None:
        if not self.cpus_per_trial > 0:
            raise ConfigError(f"--cpus-per-trial must be > 0, but got {self.cpus_per_trial}")
        g = self.gpus_per_trial
        if g < 0 or (g > 1 and g != int(g)):
            raise ConfigError(f"--gpus-per-trial must be a fraction in [0, 1] or a whole number, but got {g}")
        if self.max_failures < 0:
            raise ConfigError(f"--max-failures must be >= 0, but got {self.max_failures}")

    @property
    def threads(self) -> int:
        """torch threads of one trial: its CPU share, at least one."""
        return max(1, int(self.cpus_per_trial))

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "cpus_per_trial": self.cpus_per_trial,
                "gpus_per_trial": self.gpus_per_trial, "max_concurrent": self.max_concurrent,
                "asha": self.asha, "max_failures": self.max_failures, "storage": self.storage}


# -- connecting --------------------------------------------------------------------------------
def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds when nothing listens at host:port (ray.init itself retries for minutes)."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address must be HOST:PORT of a Ray head (e.g. 10.0.0.5:6379), but got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()
        raise RunError(f"cannot reach a Ray cluster at {address}: {why} "
                       f"(is `ray start --head --port {port}` running there?)") from None


def connect(options: RayOptions) -> None:
    """Join the cluster at `options.address` (or start a local Ray) and check one trial fits."""
    options.check()
    if ray.is_initialized():
        ray.shutdown()
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if options.address:
        _check_reachable(options.address)
        kwargs["address"] = options.address
    else:
        # a private Ray for this search: listen on loopback only, no dashboard
        kwargs.update(include_dashboard=False, _node_ip_address="127.0.0.1")
    where = options.address or "a local Ray"
    try:
        ray.init(**kwargs)
    except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError...
        raise RunError(f"cannot connect to the Ray cluster at {where}: {failure_reason(exc)}") from None
    try:
        check_fits(options)
    except BaseException:
        ray.shutdown()
        raise
    hosts = {n.get("NodeManagerHostname") for n in ray.nodes() if n.get("Alive")}
    if len(hosts) > 1 and options.storage is None:
        log.warning(f"the cluster spans {len(hosts)} machines and no --storage was given: trial checkpoints "
                    f"stay on the machine that wrote them, so a trial retried on another one starts over "
                    f"(give a path all nodes share, or s3://...)")


def check_fits(options: RayOptions) -> None:
    """A trial's CPUs and GPUs must fit on one node, or Tune would wait forever."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(r.get("CPU", 0) >= options.cpus_per_trial and r.get("GPU", 0) >= options.gpus_per_trial for r in nodes):
        return
    biggest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    raise ConfigError(
        f"the Ray cluster at {options.address or 'this machine'} cannot run one trial: a trial asks for "
        f"{options.cpus_per_trial:g} CPU and {options.gpus_per_trial:g} GPU on one node, but its largest node "
        f"has {biggest.get('CPU', 0):g} CPU and {biggest.get('GPU', 0):g} GPU ({len(nodes)} nodes); "
        f"lower --cpus-per-trial / --gpus-per-trial or add nodes"
    )


def capacity(options: RayOptions) -> int:
    """How many trials the cluster runs at once: per node, its CPUs (and GPUs) over a trial's."""
    total = 0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        res = node.get("Resources", {})
        fits = int(res.get("CPU", 0) // options.cpus_per_trial)
        if options.gpus_per_trial > 0:
            fits = min(fits, int(res.get("GPU", 0) // options.gpus_per_trial))
        total += fits
    return max(1, total)
