"""Joining a Ray cluster (or starting one in this process) and sizing the workers to it, for
:mod:`segsuite.core.ray_engine`. Ray is passed in, never imported here at module level.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from .engines import EngineSettings
from .errors import SegsuiteError
from .jobs import one_line

# Offline unless the user asked otherwise: Ray would report usage statistics.
QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}
LOCAL_CLUSTER_ENV = {"RAY_worker_niceness": "0"}
"""For a cluster segsuite starts itself: Ray runs its workers at niceness 15 by default, so on a
shared machine they would yield to everything else while the local engine runs at the user's
priority; the workers get the command's priority instead."""
def quiet_driver(ray: Any) -> None:
    """Send Ray's error feed (``(raylet) A worker died ...``, printed on stdout by a thread of the
    driver) to the ``segsuite.ray`` logger at debug level instead: the executor reports a lost
    worker's input in its own one line, and the cause stays in Ray's logs on the node. Ray has no
    public switch for the feed (``log_to_driver=False`` covers only the workers' output), so its
    printing function is replaced; called only in a process where segsuite started Ray."""
    module = getattr(getattr(ray, "_private", None), "worker", None)
    if module is None or not callable(getattr(module, "print_to_stdstream", None)):
        return
    log = logging.getLogger("segsuite.ray")

    def to_log(data: Mapping[str, Any], *_args: Any, **_kwargs: Any) -> None:
        for line in data.get("lines", ()):
            log.debug("%s: %s", data.get("pid"), line)

    module.print_to_stdstream = to_log


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A ``HOST:PORT`` (or ``ray://HOST:PORT``) nobody answers on is a one-line error now: Ray's own
    client would retry for minutes, printing its connection warnings meanwhile."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return  # "auto" and the like: Ray resolves them and says what is wrong
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise SegsuiteError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); start one "
                            "with `ray start --head` or check the address (docs/cluster.md)") from None


def worker_slots(nodes: Sequence[Mapping[str, Any]], cpus: float, gpus: float) -> int:
    """How many workers of ``cpus`` CPUs and ``gpus`` GPUs fit on the alive ``nodes``."""
    total = 0
    for node in nodes:
        if not node.get("Alive", True):
            continue
        res = node.get("Resources", {})
        fit = int(res.get("CPU", 0) // cpus) if cpus > 0 else 10**6
        if gpus > 0:
            fit = min(fit, int(res.get("GPU", 0) // gpus))
        total += fit
    return total


def plan_workers(nodes: Sequence[Mapping[str, Any]], workers: int | None, gpus: float) -> tuple[int, int]:
    """``(workers, CPUs per worker)``: as many CPUs each as still lets every worker fit (a worker's
    torch threads use them), at least one; without ``workers``, one per CPU (or GPU share)."""
    if workers is None:
        workers = worker_slots(nodes, 1, gpus)
    cpus = 1
    while worker_slots(nodes, cpus + 1, gpus) >= workers:
        cpus += 1
    fits = worker_slots(nodes, 1, gpus)
    if workers < 1 or fits < workers:
        cpu = sum(n.get("Resources", {}).get("CPU", 0) for n in nodes if n.get("Alive", True))
        gpu = sum(n.get("Resources", {}).get("GPU", 0) for n in nodes if n.get("Alive", True))
        need = "1 CPU" + (f" and {gpus:g} GPU" if gpus else "")
        raise SegsuiteError(f"--workers {workers}: the Ray cluster has room for {fits} worker(s) of {need} "
                            f"({cpu:g} CPUs, {gpu:g} GPUs); ask for fewer workers or add nodes")
    return workers, cpus


def connect(ray: Any, settings: EngineSettings) -> bool:
    """Join the cluster ``settings`` (or ``RAY_ADDRESS``) names, or start a local one; ``True`` when
    this call did (so the caller shuts it down), ``False`` when the process had already joined one."""
    if ray.is_initialized():  # an application (or a test session) already joined one
        return False
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    address = settings.address or os.environ.get("RAY_ADDRESS") or None
    common = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address:
        check_reachable(address)
    try:
        if address:
            ray.init(address=address, **common)
        else:
            for key, value in LOCAL_CLUSTER_ENV.items():
                os.environ.setdefault(key, value)
            workers = settings.workers or 0
            ray.init(num_cpus=max(os.cpu_count() or 1, workers), include_dashboard=False, **common,
                     **dict(settings.ray_init))
        quiet_driver(ray)
    except Exception as exc:  # noqa: BLE001 - Ray raises several kinds; each is the user's set-up
        where = f"--address {address}" if address else "a local Ray cluster"
        raise SegsuiteError(f"{where}: cannot start or join Ray ({one_line(str(exc))[:300]}); "
                            "see docs/cluster.md (ray start --head, --address HOST:6379)") from None
    return True
