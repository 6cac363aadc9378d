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

from components import keys
from components.utils import read_record, set_properties
from quant_lib import records
from components.verified_pusher.executor import Executor, PushRefusedError
from quant_lib import tflite


@pytest.fixture(scope="module")
def int8_bytes():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    rep = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    return tflite.convert_int8(m, rep)


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
    versions = os.listdir(serving) if os.path.isdir(serving) else []
    assert read_record(pushed, records.Pushed).pushed == int(should_push)
    if not should_push:
        assert versions == []
        return
    assert len(versions) == 1 and not versions[0].startswith(".")
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
    assert len(os.listdir(serving)) == 2
    assert not fileio.glob(str(serving / ".*"))
