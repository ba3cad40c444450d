"""Waiting for the other workers of a multi-worker run before TensorFlow connects to them.

MultiWorkerMirroredStrategy's constructor blocks in C++ until every task of TF_CONFIG's cluster
has joined, holding the GIL: nothing is printed, Python's Ctrl-C handler never runs, and
TensorFlow's own SIGTERM handler (its preemption notifier) swallows SIGTERM, so a worker whose
peer never starts can only be ended by kill -9. `wait_for_peers` runs first, in plain Python:
it says which workers it waits for, honours SIGINT/SIGTERM and gives up after a timeout, and
returns once every peer's port accepts connections, so the constructor that follows finds them.

This module does not import TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Callable

COORDINATED_JOBS = ("chief", "worker")  # the tasks MultiWorkerMirroredStrategy waits for


class ClusterError(Exception):
    """The cluster did not come together (timeout, or a stop signal while waiting); one line."""


def cluster_tasks(tf_config: str | None) -> tuple[str | None, dict[str, str]]:
    """(this task's address, {"worker 1": "host:port", ...} of the other chief/worker tasks)
    from a TF_CONFIG string; (None, {}) when it cannot be read (TensorFlow reports that)."""
    try:
        spec = json.loads(tf_config or "")
        cluster, task = spec["cluster"], spec["task"]
        own_name = f"{task['type']} {int(task['index'])}"
        tasks = {
            f"{job} {i}": str(address) for job in COORDINATED_JOBS for i, address in enumerate(cluster.get(job, []))
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        return None, {}
    own = tasks.pop(own_name, None)
    return (own, tasks) if own is not None else (None, {})


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _reachable(address: str) -> bool:
    try:
        with socket.create_connection(_host_port(address), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _listening(address: str | None):
    """Accept connections on this task's port while waiting (without serving them).

    Every worker waits until its peers' ports answer, and TensorFlow opens a worker's port only
    once the worker stops waiting: without a stand-in listener, two workers would wait for each
    other forever. Closed before TensorFlow binds the same port.
    """
    sock = None
    if address is not None:
        try:
            sock = socket.socket(socket.AF_INET6 if ":" in _host_port(address)[0] else socket.AF_INET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("", _host_port(address)[1]))
            sock.listen(64)
        except (OSError, ValueError):  # port taken or address unreadable: TensorFlow will say
            if sock is not None:
                sock.close()
            sock = None
    try:
        yield
    finally:
        if sock is not None:
            sock.close()


@contextlib.contextmanager
def _stop_signals():
    """SIGINT/SIGTERM recorded in a list while waiting (main thread only)."""
    received: list[int] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _names(missing: dict[str, str]) -> str:
    return ", ".join(f"{name} ({address})" for name, address in missing.items())


def wait_for_peers(
    tf_config: str | None, timeout: float, log: Callable[[str], None] = print, poll: float = 0.5
) -> None:
    """Return once every other chief/worker task of `tf_config` accepts TCP connections.

    Logs which tasks it waits for (again whenever that set shrinks). Raises ClusterError after
    `timeout` seconds (0: wait forever), or when SIGINT or SIGTERM arrives while waiting. Nothing
    is written anywhere. A TF_CONFIG it cannot read returns at once, for TensorFlow to report.
    """
    own, peers = cluster_tasks(tf_config)
    if not peers:
        return
    start = time.monotonic()
    shown: dict[str, str] | None = None
    with _listening(own), _stop_signals() as received:
        while True:
            missing = {name: address for name, address in peers.items() if not _reachable(address)}
            if not missing:
                if shown:
                    log("all workers are up")
                return
            if missing != shown:
                limit = f"--worker_timeout={timeout:g} s" if timeout > 0 else "no --worker_timeout"
                log(f"waiting for {_names(missing)} to start ({limit}; Ctrl-C stops)")
                shown = missing
            waited = time.monotonic() - start
            if timeout > 0 and waited >= timeout:
                raise ClusterError(
                    f"{_names(missing)} did not start within --worker_timeout="
                    f"{timeout:g} s; start the same command with the same "
                    "TF_CONFIG cluster on every worker"
                )
            # Short polls: a signal is seen within one (its handler only records it).
            time.sleep(poll if timeout <= 0 else min(poll, max(timeout - waited, 0.01)))
            if received:
                raise ClusterError(
                    f"{signal.Signals(received[0]).name} while waiting for {_names(missing)}; stopped, nothing written"
                )
