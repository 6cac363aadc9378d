"""A .tflite file must load where it lands, or fail clearly: the project's readers on damaged
copies of a real int8 model (seeded mutations, each batch in its own process so a crash or hang
is seen as such), and the two defects found that way before: int8 weights with non-zero zero
points (TFLite refuses them when preparing) and a tensor name that is not UTF-8."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tf_keras as keras
from sklearn.datasets import load_digits
from tensorflow.lite.tools import flatbuffer_utils

from tfx_qat.quant_lib.config import DataSpec, QuantizationConfig
from tfx_qat.quant_lib.qat import plan, train
from tfx_qat.quant_lib.tflite import convert, edgetpu, flatbuffer, interpreter, validate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLEAR = {"ok", "ModelFormatError", "ExportValidationError"}


@pytest.fixture(scope="module")
def int8_bytes():
    x = (load_digits().data / 16.0).reshape(-1, 8, 8, 1).astype(np.float32)
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    out = keras.layers.Dense(10, name="logits")(keras.layers.Flatten()(h))
    q = plan.quantize(keras.Model(inp, out), QuantizationConfig(
        data=DataSpec(image_shape=(8, 8, 1), num_classes=10)))
    train.calibrate_ranges(q, [x[:64]])
    return convert.convert_int8(q, x[:100])


def _edit(model_bytes, change):
    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    change(m)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def _conv_weights(m):
    g = m.subgraphs[0]
    _, names, _ = flatbuffer.schema_names()
    for op in g.operators:
        code = m.operatorCodes[op.opcodeIndex]
        if names[max(code.builtinCode, code.deprecatedBuiltinCode)] == "CONV_2D":
            return g.tensors[op.inputs[1]]
    raise AssertionError("no CONV_2D")


def test_asymmetric_int8_weights_are_refused_before_tflite_would(int8_bytes):
    def zero_points(m):
        w = _conv_weights(m)
        w.quantization.zeroPoint = np.full(len(w.quantization.scale), 5632, np.int64)
    bad = _edit(int8_bytes, zero_points)
    flatbuffer.read_flatbuffer(bad)  # structurally a model
    def score(b):
        return interpreter.TFLiteClassifier(b).predict({"image": np.zeros((1, 8, 8, 1), np.float32)})
    for read in (validate.inspect_integer, validate.validate_integer, score):
        with pytest.raises(flatbuffer.ModelFormatError, match="zero point|preparing"):
            read(bad)
    with pytest.raises(flatbuffer.ModelFormatError,
                       match=r"int8 weight tensor .* zero points \[5632\]"):
        validate.inspect_integer(bad)


def test_a_name_that_is_not_utf8_is_a_format_error(int8_bytes):
    def names(m):
        for t in m.subgraphs[0].tensors:
            t.name = b"\xff\xfe" + (t.name or b"")
    bad = _edit(int8_bytes, names)
    with pytest.raises(flatbuffer.ModelFormatError, match="tensor name is not UTF-8"):
        edgetpu.analyze(bad)


def _mutations(model_bytes, n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        b = bytearray(model_bytes)
        if i % 3 == 0:
            b = b[:int(rng.integers(8, len(b)))]  # truncated
        else:
            for pos in rng.integers(0, len(b), int(rng.integers(1, 9))):
                b[pos] = int(rng.integers(0, 256))  # a few bytes overwritten
        out.append(bytes(b))
    return out


@pytest.mark.slow
def test_damaged_copies_load_or_fail_clearly_never_crash_or_hang(int8_bytes, tmp_path):
    cases = _mutations(int8_bytes, int(os.environ.get("FUZZ_CASES", 60)),
                       int(os.environ.get("FUZZ_SEED", 0)))
    paths = []
    for i, data in enumerate(cases):
        p = tmp_path / f"m{i}.tflite"
        p.write_bytes(data)
        paths.append(f"{i}={p}")
    outcomes, crashed, todo = {}, [], list(paths)
    while todo:  # one process per batch; after a crash, the rest in a new one
        try:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), *todo], cwd=REPO,
                                  capture_output=True, text=True, timeout=300,
                                  env={**os.environ, "PYTHONPATH": REPO})
            stdout, rc = proc.stdout, proc.returncode
        except subprocess.TimeoutExpired as e:
            stdout, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (
                e.stdout or ""), "timeout"
        last = None
        for line in stdout.splitlines():
            idx, reader, outcome = line.split(" ", 2)
            if outcome == "start":
                last = (int(idx), reader)
            else:
                outcomes[(int(idx), reader)] = outcome
                last = None
        if rc == 0:
            break
        assert last is not None, f"reader process failed outside a read (rc {rc})"
        crashed.append((last, rc))
        todo = [p for p in todo if int(p.split("=")[0]) > last[0]]
    assert not crashed, f"crashes or hangs (model, reader, exit): {crashed}"
    assert len(outcomes) == 4 * len(cases)
    unclear = {k: v for k, v in outcomes.items() if v not in CLEAR}
    assert not unclear, unclear
    assert sum(v == "ModelFormatError" for v in outcomes.values()) >= len(cases)  # real damage
    assert any(v == "ok" for v in outcomes.values())  # weight bytes changed: still a model


def _read_all(args) -> None:
    """In the subprocess: each ``index=path`` model fed to each reader, one line per read:
    index, reader, outcome (ok or the exception's class name), with a ``start`` line first so a
    crash is pinned to its read."""
    def score(data):
        c = interpreter.TFLiteClassifier(data)
        c.predict({k: np.zeros([1] + list(d["shape"][1:]), np.float32)
                   for k, d in c._in.items()})  # pylint: disable=protected-access
    readers = {"read_flatbuffer": flatbuffer.read_flatbuffer, "edgetpu.analyze": edgetpu.analyze,
               "inspect_integer": validate.inspect_integer, "TFLiteClassifier": score}
    for arg in args:
        index, path = arg.split("=", 1)
        with open(path, "rb") as f:
            data = f.read()
        for name, read in readers.items():
            print(f"{index} {name} start", flush=True)
            try:
                read(data)
                outcome = "ok"
            except Exception as e:  # noqa: BLE001  (the test judges the class)
                outcome = type(e).__name__
            print(f"{index} {name} {outcome}", flush=True)


if __name__ == "__main__":
    _read_all(sys.argv[1:])
