"""Push safety, exhaustively over blessing states: VerifiedPusher pushes only a blessed model whose
bytes hash to the sha256 QuantEvaluator recorded, and the pushed bytes equal the evaluated bytes."""
import hashlib
import itertools
import os

import numpy as np
import pytest
import tf_keras as keras
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from tfx_qat.components import keys
from tfx_qat.components.utils import read_record, set_properties
from tfx_qat.components.verified_pusher import publish
from tfx_qat.components.verified_pusher.executor import Executor, PushRefusedError
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.tflite import convert


@pytest.fixture(scope="module")
def int8_bytes():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    rep = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    return convert.convert_int8(m, rep)


def _setup(tmp_path, model_bytes, blessed, sha, with_blessing=True):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    os.makedirs(os.path.join(model.uri, "Format-Serving"))
    with open(os.path.join(model.uri, "Format-Serving", keys.TFLITE_FILE), "wb") as f:
        f.write(model_bytes)
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    set_properties(blessing, records.Blessing(
        blessed=None if blessed is None else bool(blessed), int8_sha256=sha))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    inputs = {"model": [model]}
    if with_blessing:
        inputs["model_blessing"] = [blessing]
    return inputs, {"pushed_model": [pushed]}, pushed


def _props(base):
    dest = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base)))
    return {"push_destination": proto_utils.proto_to_json(dest)}


BLESSED = (1, 0, None)            # blessed, not blessed, property missing
SHA = ("match", "other", None)    # evaluated bytes, different bytes, not recorded


@pytest.mark.parametrize("blessed,sha", list(itertools.product(BLESSED, SHA)))
def test_pushes_only_blessed_and_verified_bytes(tmp_path, int8_bytes, blessed, sha):
    digest = hashlib.sha256(int8_bytes).hexdigest()
    recorded = {"match": digest, "other": hashlib.sha256(b"another model").hexdigest(),
                None: None}[sha]
    inputs, outputs, pushed = _setup(tmp_path, int8_bytes, blessed, recorded)
    serving = tmp_path / "serving"
    should_push = blessed == 1 and sha == "match"
    if blessed == 1 and sha != "match":
        with pytest.raises(PushRefusedError, match="sha256|int8_sha256"):
            Executor().Do(inputs, outputs, _props(serving))
    else:
        Executor().Do(inputs, outputs, _props(serving))
    versions = publish.complete_versions(str(serving))
    assert read_record(pushed, records.Pushed).pushed == int(should_push)
    if not should_push:
        assert versions == []
        return
    assert len(versions) == 1
    assert sorted(os.listdir(serving)) == sorted(versions + [publish.LATEST_FILE])  # no leftovers
    assert publish.read_marker(str(serving / publish.LATEST_FILE)).version == versions[0]
    with open(os.path.join(serving, versions[0], keys.TFLITE_FILE), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == digest  # pushed bytes == evaluated bytes
    assert read_record(pushed, records.Pushed).pushed_sha256 == digest
    assert read_record(pushed, records.Pushed).pushed_destination == str(serving / versions[0])


def test_evaluator_failed_means_no_blessing_and_no_push(tmp_path, int8_bytes):
    """The stock Pusher would push "without validation" here; VerifiedPusher refuses."""
    inputs, outputs, pushed = _setup(tmp_path, int8_bytes, 1, None, with_blessing=False)
    with pytest.raises(PushRefusedError, match="no model_blessing"):
        Executor().Do(inputs, outputs, _props(tmp_path / "serving"))
    assert not os.path.exists(tmp_path / "serving")
    assert read_record(pushed, records.Pushed).pushed == 0


def test_model_changed_after_evaluation_is_not_pushed(tmp_path, int8_bytes):
    digest = hashlib.sha256(int8_bytes).hexdigest()
    tampered = bytearray(int8_bytes)
    tampered[len(tampered) // 2] ^= 0xFF
    inputs, outputs, _ = _setup(tmp_path, bytes(tampered), 1, digest)
    with pytest.raises(PushRefusedError, match="is not the model QuantEvaluator blessed"):
        Executor().Do(inputs, outputs, _props(tmp_path / "serving"))
    assert not os.path.exists(tmp_path / "serving") or os.listdir(tmp_path / "serving") == []


def test_two_pushes_in_the_same_second_get_distinct_versions(tmp_path, int8_bytes):
    digest = hashlib.sha256(int8_bytes).hexdigest()
    serving = tmp_path / "serving"
    for i in range(2):
        inputs, outputs, _ = _setup(tmp_path / str(i), int8_bytes, 1, digest)
        Executor().Do(inputs, outputs, _props(serving))
    assert len(publish.complete_versions(str(serving))) == 2
    assert not fileio.glob(str(serving / ".*"))


# --- Object stores and concurrency ------------------------------------------------------------
# objstore://<path> (tests/objstore_fs.py) is a filesystem whose rename is copy-then-delete and
# whose directories are prefixes, as on gs:// and s3://.
OBJSTORE_PUSH = """
import hashlib, os, sys
sys.path[:0] = [{root!r}, os.path.join({root!r}, "tests")]
import objstore_fs  # noqa: F401  (registers objstore://)
from test_push_safety import _props, _setup
from tfx_qat.components.verified_pusher.executor import Executor
import pathlib
data = open({model!r}, "rb").read()
inputs, outputs, _ = _setup(pathlib.Path({tmp!r}), data, 1, hashlib.sha256(data).hexdigest())
Executor().Do(inputs, outputs, _props({base!r}))
"""


def _push_script(tmp_path, model_bytes, base):
    """(repository root, code) of a push of ``model_bytes`` to ``base`` in a process of its own."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    model = tmp_path / "int8.tflite"
    model.write_bytes(model_bytes)
    return root, OBJSTORE_PUSH.format(root=root, model=str(model), tmp=str(tmp_path / "killed"),
                                      base=base)


def _push(tmp, model_bytes, base):
    inputs, outputs, pushed = _setup(tmp, model_bytes, 1, hashlib.sha256(model_bytes).hexdigest())
    Executor().Do(inputs, outputs, _props(base))
    return read_record(pushed, records.Pushed)


def test_object_store_push_killed_mid_copy_is_never_referenced(tmp_path, int8_bytes, monkeypatch):
    """A job SIGKILLed while writing the model into its version leaves a version without a
    marker: LATEST.json never names it, the next push completes its own version, and a push after
    the leftover is stale removes it."""
    import subprocess
    import sys
    import objstore_fs as objstore  # noqa: F401
    base = f"{objstore.SCHEME}{tmp_path}/serving"
    root, code = _push_script(tmp_path, int8_bytes, base)
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "OBJSTORE_KILL_AFTER_HALF": keys.TFLITE_FILE},
                          timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]  # killed mid-copy, not a clean failure
    serving = tmp_path / "serving"
    partial = [n for n in os.listdir(serving) if n.isdigit()]
    assert len(partial) == 1  # the dead push's version, half a model and no marker
    half = (serving / partial[0] / keys.TFLITE_FILE).read_bytes()
    assert 0 < len(half) < len(int8_bytes)
    assert publish.complete_versions(base) == []
    assert not (serving / publish.LATEST_FILE).exists()

    rec = _push(tmp_path / "next", int8_bytes, base)  # the next push is not blocked by it
    assert publish.complete_versions(base) == [rec.pushed_version] != partial
    latest = publish.read_marker(f"{base}/{publish.LATEST_FILE}")
    assert latest.version == rec.pushed_version
    assert latest.sha256 == hashlib.sha256(int8_bytes).hexdigest() == rec.pushed_sha256
    pushed = (serving / latest.version / keys.TFLITE_FILE).read_bytes()
    assert hashlib.sha256(pushed).hexdigest() == latest.sha256
    assert (serving / partial[0]).exists()  # young: could be a push in progress, kept

    monkeypatch.setattr(publish, "STALE_SECONDS", -1)
    rec3 = _push(tmp_path / "third", int8_bytes, base)
    assert not (serving / partial[0]).exists()  # stale leftover removed
    assert publish.complete_versions(base) == [rec.pushed_version, rec3.pushed_version]


def test_push_killed_on_gcs_is_never_referenced(tmp_path, int8_bytes, gcs, monkeypatch):
    """On a GCS server, through TF's own gs:// filesystem: a job SIGKILLed as it starts uploading
    the model into its version leaves that version without model or marker; LATEST.json never
    names it, the next push completes its own version, and a push after the leftover is stale
    removes it."""
    import subprocess
    import sys
    base = f"gs://bucket/push-killed/{tmp_path.name}/serving"
    root, code = _push_script(tmp_path, int8_bytes, base)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=root, stderr=subprocess.PIPE,
                            text=True)
    gcs.kill_on_upload(proc.pid, f"/{keys.TFLITE_FILE}")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -9, err[-2000:]  # killed mid-push, not a clean failure
    [partial] = [n.rstrip("/") for n in fileio.listdir(base) if n.rstrip("/").isdigit()]
    assert not fileio.exists(f"{base}/{partial}/{keys.TFLITE_FILE}")
    assert publish.complete_versions(base) == [] and not fileio.exists(f"{base}/LATEST.json")

    rec = _push(tmp_path / "next", int8_bytes, base)  # the next push is not blocked by it
    assert publish.complete_versions(base) == [rec.pushed_version] != [partial]
    latest = publish.read_marker(f"{base}/{publish.LATEST_FILE}")
    assert latest.version == rec.pushed_version
    assert latest.sha256 == hashlib.sha256(int8_bytes).hexdigest() == rec.pushed_sha256
    with fileio.open(f"{base}/{latest.version}/{keys.TFLITE_FILE}", "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == latest.sha256
    assert fileio.exists(f"{base}/{partial}")  # young: could be a push in progress, kept

    monkeypatch.setattr(publish, "STALE_SECONDS", -1)
    rec3 = _push(tmp_path / "third", int8_bytes, base)
    # Stale leftover removed: asked of the server (TF's gs:// caches a folder's existence).
    key = f"{base[len('gs://bucket/'):]}/{partial}/"
    assert [b.name for b in gcs.client().list_blobs("bucket", prefix=key)] == []
    assert publish.complete_versions(base) == [rec.pushed_version, rec3.pushed_version]


def test_an_empty_version_prefix_on_gcs_is_young_not_stale(tmp_path, gcs):
    """TF's gs:// stats a "directory" as written at time 0. A version prefix seen empty (a claim
    just withdrawn, a listing racing a new claim) counts as young: taken for a leftover from
    1970, it was removed while a concurrent push wrote into it (NotFoundError in 2 of 8
    concurrent pushes on a loaded 2-core machine)."""
    base = f"gs://bucket/push-empty/{tmp_path.name}/serving"
    fileio.makedirs(f"{base}/123")  # the directory marker object TF's gs:// writes
    assert fileio.isdir(f"{base}/123") and not fileio.listdir(f"{base}/123")
    publish.prepare(base)
    assert fileio.isdir(f"{base}/123")  # kept: nothing says it is old


def _names(path) -> list:
    """Entry names of a directory on any filesystem (TF's gs:// lists a directory as 'name/')."""
    return sorted(n.rstrip("/") for n in fileio.listdir(path))


@pytest.mark.parametrize("where", ["local", "objstore", "gcs"])
def test_eight_concurrent_pushes_make_eight_complete_versions(tmp_path, int8_bytes, where,
                                                               request, caplog):
    """Eight pushes of one blessed model into one base, released together (a backfill): eight
    distinct complete versions, no shared staging, nothing left behind, LATEST the newest. On
    the GCS server through TF's gs:// filesystem as on local disk and the object-store stand-in."""
    import threading
    import objstore_fs as objstore
    base = {"local": str(tmp_path / "serving"), "objstore": f"{objstore.SCHEME}{tmp_path}/serving",
            "gcs": f"gs://bucket/push-concurrent/{tmp_path.name}/serving"}[where]
    if where == "gcs":
        request.getfixturevalue("gcs")
    barrier, results, errors = threading.Barrier(8), [], []

    def push(i):
        barrier.wait()
        try:
            results.append(_push(tmp_path / f"p{i}", int8_bytes, base))
        except Exception as e:  # noqa: BLE001  (collected, asserted below)
            errors.append(e)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # No push took another's version in progress for a dead push's leftover.
    assert not [r for r in caplog.records if "did not finish" in r.getMessage()]
    versions = sorted(r.pushed_version for r in results)
    assert len(set(versions)) == 8 and publish.complete_versions(base) == versions
    digest = hashlib.sha256(int8_bytes).hexdigest()
    for v in versions:
        marker = publish.read_marker(f"{base}/{v}/{publish.MARKER_FILE}")
        assert marker.version == v and marker.sha256 == digest
        assert marker.files[keys.TFLITE_FILE] == digest
    assert _names(base) == sorted(versions + [publish.LATEST_FILE])
    assert all(_names(f"{base}/{v}") == sorted([keys.TFLITE_FILE, publish.MARKER_FILE])
               for v in versions)  # no claims
    assert publish.read_marker(f"{base}/{publish.LATEST_FILE}").version == versions[-1]
