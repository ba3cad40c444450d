"""pga_tf.training.rendezvous: reading TF_CONFIG's tasks, and workers waiting for each other (no TensorFlow)."""

import json
import socket
import threading

import pytest

from pga_tf.training import rendezvous


def _tf_config(cluster, task_type, index):
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_cluster_tasks_names_every_other_chief_and_worker():
    cluster = {"chief": ["a:1"], "worker": ["b:2", "c:3"], "evaluator": ["d:4"], "ps": ["e:5"]}
    assert rendezvous.cluster_tasks(_tf_config(cluster, "worker", 1)) == ("c:3", {"chief 0": "a:1", "worker 0": "b:2"})
    for unreadable in (None, "", "{", json.dumps({"cluster": cluster}), _tf_config(cluster, "worker", 7)):
        assert rendezvous.cluster_tasks(unreadable) == (None, {})


def test_workers_that_all_wait_find_each_other():
    """Every worker waits for the others' ports before TensorFlow opens its own: each must
    answer on its port while it waits, or they would wait for each other forever. Once done
    waiting, each opens its port as TensorFlow's server does, until all are through."""
    addresses = [f"127.0.0.1:{p}" for p in _free_ports(3)]
    cluster = {"worker": addresses}
    errors, servers, done = [], [], threading.Barrier(3, timeout=60)

    def worker(i):
        try:
            rendezvous.wait_for_peers(_tf_config(cluster, "worker", i), timeout=20, log=lambda _: None, poll=0.1)
            server = socket.create_server(("127.0.0.1", int(addresses[i].rsplit(":", 1)[1])), reuse_port=False)
            servers.append(server)
        except rendezvous.ClusterError as e:
            errors.append(str(e))
        done.wait()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for server in servers:
        server.close()
    assert not errors and len(servers) == 3, errors


def test_timeout_names_the_missing_workers():
    ports = _free_ports(3)
    cluster = {"chief": [f"127.0.0.1:{ports[0]}"], "worker": [f"127.0.0.1:{p}" for p in ports[1:]]}
    logs = []
    with pytest.raises(rendezvous.ClusterError) as e:
        rendezvous.wait_for_peers(_tf_config(cluster, "worker", 0), timeout=0.5, log=logs.append, poll=0.1)
    missing = f"chief 0 (127.0.0.1:{ports[0]}), worker 1 (127.0.0.1:{ports[2]})"
    assert logs == [f"waiting for {missing} to start (--worker_timeout=0.5 s; Ctrl-C stops)"]
    assert str(e.value).startswith(f"{missing} did not start within --worker_timeout=0.5 s")
