"""QAT under tf.distribute: MirroredStrategy over two logical CPU devices, and a two-worker
MultiWorkerMirroredStrategy cluster on localhost (real processes, TF_CONFIG), each producing a QAT
model that exports to a valid int8 TFLite model."""
import json
import os
import socket
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(__file__), "dist_qat_worker.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT, **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def test_mirrored_two_logical_cpus(tmp_path):
    proc = subprocess.run([sys.executable, WORKER, "mirrored", str(tmp_path)], env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["replicas"] == 2 and result["strategy"] == "MirroredStrategy"
    assert result["int8_ops"] > 5 and result["int8_accuracy"] > 0.5


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multi_worker_two_processes_on_localhost(tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers},
                                "task": {"type": "worker", "index": i}})
        out = tmp_path / f"w{i}"
        out.mkdir()
        procs.append(subprocess.Popen([sys.executable, WORKER, "multi_worker_mirrored", str(out)],
                                      env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=300))
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    result = json.loads((tmp_path / "w0" / "result.json").read_text())
    assert result["chief"] and result["strategy"] in ("MultiWorkerMirroredStrategy",
                                                  "CollectiveAllReduceStrategy")
    assert result["replicas"] == 2 and result["int8_ops"] > 5
    assert not (tmp_path / "w1" / "result.json").exists()  # only the chief exports
