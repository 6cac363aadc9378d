"""Pure quant_lib tests: input quantization, Keras-vs-TFLite parity, validation, blessing rules."""
import json
import os

import numpy as np
import pytest
import tf_keras as keras

from tfx_qat.quant_lib.config import DataSpec
from tfx_qat.quant_lib.evaluation import metrics
from tfx_qat.quant_lib.qat import keras2, plan, train
from tfx_qat.quant_lib.tflite import convert, flatbuffer, interpreter, validate


def test_quantize_input_rounds_half_away_from_zero_and_saturates():
    scale, zp = 0.5, 0
    x = np.array([0.25, -0.25, 0.74, 0.76, 63.5, 63.76, 1000.0, -64.0, -64.3, -1000.0])
    q = interpreter.quantize_input(x, scale, zp, np.int8)
    assert q.dtype == np.int8
    assert q.tolist() == [1, -1, 1, 2, 127, 127, 127, -128, -128, -128]
    # Truncation (what TFMA's extractor does) would give 0 and 1 for the first and third.
    assert np.trunc(x[[0, 2]] / scale).tolist() == [0.0, 1.0]


def test_quantize_input_uint8_range_edges():
    scale, zp = 1 / 255, 0
    q = interpreter.quantize_input(np.array([0.0, 1.0, 1.2, -0.1, 0.5 / 255]), scale, zp, np.uint8)
    assert q.tolist() == [0, 255, 255, 0, 1]


def _tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(4)(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def tiny_qat():
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 1, size=(256, 8, 8, 1)).astype(np.float32)
    y = rng.randint(0, 4, size=256)
    model = _tiny_model()
    q = plan.quantize(model)
    train.compile_for_training(q, 1e-3)
    q.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return q, x


def test_qat_keras_and_int8_tflite_agree_within_one_step(tiny_qat):
    q, x = tiny_qat
    int8 = convert.convert_int8(q, x[:64])
    report = validate.validate_integer(int8)
    assert report.input_dtype == "int8" and report.output_dtype == "int8"
    runner = interpreter.TFLiteClassifier(int8)
    got = runner.predict(x[64:])
    want = q.predict(x[64:], verbose=0)
    out_scale = runner._out["quantization"][0]
    err = np.abs(got - want).max()
    assert err <= 1.5 * out_scale, f"max error {err} vs output step {out_scale}"
    # Within 1.5 steps per class, top-1 can differ only where Keras's top two are within 3 steps.
    top2 = np.sort(want, axis=-1)[:, -2:]
    near = top2[:, 1] - top2[:, 0] <= 3 * out_scale + 1e-7
    assert np.all((np.argmax(got, -1) == np.argmax(want, -1)) | near)


def test_converter_given_the_variables_alone_writes_the_bytes_it_wrote_given_the_model(
        tiny_qat, monkeypatch):
    """convert_int8 hands the converter the model's variables, not the Keras model (which it then
    serialized layer by layer first): the int8 file must not change."""
    q, x = tiny_qat
    fast = convert.convert_int8(q, x[:16])
    monkeypatch.setattr(convert, "_variables_only", lambda model: model)  # the Keras model
    assert convert.convert_int8(q, x[:16]) == fast


def test_batched_inference_equals_one_by_one(tiny_qat):
    q, x = tiny_qat
    runner = interpreter.TFLiteClassifier(convert.convert_int8(q, x[:32]))
    batched = runner.predict(x[:21], batch_size=8)
    single = np.concatenate([runner.predict(x[i:i + 1], batch_size=1) for i in range(21)])
    np.testing.assert_array_equal(batched, single)


def test_validator_rejects_float_and_hybrid_models(tiny_qat):
    q, x = tiny_qat
    float_report = validate.inspect_integer(convert.convert_float(_tiny_model()))
    assert not float_report.ok
    assert any("float tensor" in p for p in float_report.problems)
    assert any(p.endswith("dtype is float32, expected int8") for p in float_report.problems)
    with pytest.raises(flatbuffer.ExportValidationError, match="not full-integer"):
        validate.validate_integer(convert.convert_float(_tiny_model()))


def test_validator_allows_quantize_only_at_requested_uint8_boundary(tiny_qat):
    q, x = tiny_qat
    u8 = convert.convert_int8(q, x[:32], "uint8", "uint8")
    report = validate.validate_integer(u8, "uint8", "uint8")
    assert report.op_counts.get("QUANTIZE", 0) >= 1
    assert not validate.inspect_integer(u8, "int8", "int8").ok


def test_garbage_and_truncated_bytes_are_validation_errors_not_crashes(tiny_qat):
    with pytest.raises(flatbuffer.ExportValidationError, match="not a TFLite flatbuffer"):
        validate.inspect_integer(b"\x00" * 64)
    good = convert.convert_int8(tiny_qat[0], tiny_qat[1][:16])
    # A truncated model crashes the C++ interpreter outright; it must be refused before that.
    with pytest.raises(flatbuffer.ExportValidationError, match="malformed or truncated"):
        interpreter.TFLiteClassifier(good[:len(good) - 100])


def test_empty_representative_dataset_is_rejected():
    with pytest.raises(ValueError, match="representative dataset is empty"):
        convert.convert_int8(_tiny_model(), np.zeros((0, 8, 8, 1), np.float32))


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.d = keras.layers.Dense(3)

    def call(self, x):
        return self.d(x)


def test_subclassed_model_gets_actionable_error():
    m = _Subclassed()
    m(np.zeros((1, 4), np.float32))
    with pytest.raises(keras2.QuantizationError, match="_Subclassed.*subclassed.*Functional API"):
        plan.quantize(m)


def test_keras3_model_gets_actionable_error():
    keras3 = pytest.importorskip("keras")
    assert keras3.__version__.startswith("3"), "the venv's standalone keras should be Keras 3"
    m = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    with pytest.raises(keras2.QuantizationError, match="Keras 3.*tf_keras.*TF_USE_LEGACY_KERAS=1"):
        plan.quantize(m)


def test_softmax_head_is_detected_through_qat_wrappers():
    m = _tiny_model()
    probs = keras.Model(m.input, keras.layers.Softmax()(m.output))
    assert not keras2.outputs_are_probabilities(m)
    assert keras2.outputs_are_probabilities(probs)
    assert keras2.outputs_are_probabilities(plan.quantize(probs))


def test_op_without_int8_kernel_fails_validation_naming_it():
    # The converter silently keeps ELU in float (DEQUANTIZE -> ELU -> QUANTIZE) even with
    # TFLITE_BUILTINS_INT8; the validator must catch and name it.
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = keras.layers.ELU()(x)
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    rep = np.random.RandomState(0).uniform(0, 1, (32, 8, 8, 1)).astype(np.float32)
    model = convert.convert_int8(keras.Model(inp, out), rep)
    with pytest.raises(flatbuffer.ExportValidationError) as e:
        validate.validate_integer(model)
    msg = str(e.value)
    assert "ELU runs on float tensor" in msg and "DEQUANTIZE" in msg
    assert "QUANTIZE inside the graph" in msg


def test_float32_io_eval_copy_allows_only_boundary_conversions(tiny_qat):
    q, x = tiny_qat
    f_io = convert.convert_int8(q, x[:32], "float32", "float32")
    report = validate.validate_integer(f_io, "float32", "float32")
    assert report.op_counts["QUANTIZE"] == 1 and report.op_counts["DEQUANTIZE"] == 1
    np.testing.assert_allclose(interpreter.TFLiteClassifier(f_io).predict(x[:50]),
                               interpreter.TFLiteClassifier(convert.convert_int8(q, x[:32])).predict(
                                   x[:50]), atol=1e-6)


def test_int16x8_scheme_converts_float_models_and_explains_qat(tiny_qat):
    q, x = tiny_qat
    float_model = _tiny_model()
    m16 = convert.convert_int8(float_model, x[:32], "int16", "int16", activations="int16x8")
    report = validate.validate_integer(m16, "int16", "int16")
    assert report.input_dtype == "int16"
    got = interpreter.TFLiteClassifier(m16).predict(x[64:128])
    want = float_model.predict(x[64:128], verbose=0)
    assert np.abs(got - want).max() < 0.05 * (want.max() - want.min())
    assert metrics.agreement(got, want) >= 0.9
    with pytest.raises(flatbuffer.ExportValidationError, match="(?s)int16x8.*8-bit fake-quant.*float model"):
        convert.convert_int8(q, x[:32], "int16", "int16", activations="int16x8")


def _stats(labels, f_scores, i_scores, k=2, classes=3):
    return metrics.SliceStats(classes, k).add(np.asarray(labels), {"float": np.asarray(f_scores),
                                                                   "int8": np.asarray(i_scores)})


def test_slice_stats_merge_equals_one_pass():
    rng = np.random.RandomState(0)
    y = rng.randint(0, 3, 50)
    f, i = rng.rand(50, 3), rng.rand(50, 3)
    whole = _stats(y, f, i)
    parts = _stats(y[:20], f[:20], i[:20]).merge(_stats(y[20:], f[20:], i[20:]))
    assert parts.to_dict() == whole.to_dict()
    d = whole.to_dict()
    assert d["accuracy"]["float"] == np.mean(np.argmax(f, 1) == y)
    top2 = np.argsort(-i, 1)[:, :2]
    assert d["top_k_accuracy"]["int8"] == np.mean((top2 == y[:, None]).any(1))
    assert np.trace(np.asarray(d["confusion_matrix"]["int8"])) == whole.correct["int8"]
    assert metrics.SliceStats.from_counts(whole.to_counts()).to_dict() == d


def _imports(path):
    """Module names a file imports, lazily or not (``from P import m``: P and P.m)."""
    import ast
    with open(path) as f:
        tree = ast.parse(f.read())
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
            subs = {f"{n.module}.{a.name}" for a in n.names if _is_module(f"{n.module}.{a.name}")}
            # ``from room import module`` imports that module; the room's __init__ is no edge
            out |= subs if len(subs) == len(n.names) else {n.module} | subs
    return out


def _is_module(dotted: str) -> bool:
    """Whether a tfx_qat.* name is a module or package of the checkout (not a class)."""
    parts = dotted.split(".")
    if parts[0] != "tfx_qat" or len(parts) < 2:
        return False
    base = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), *parts[1:])
    return os.path.isfile(base + ".py") or os.path.isdir(base)


# quant_lib's rooms, bottom to top: a module imports only from its own room or one below.
ROOMS = ("internals", "config", "artifacts", "examples", "qat", "tflite", "evaluation", "search",
         "reports")


def test_the_three_floors_import_downward_only_and_quant_lib_has_no_import_cycle():
    import glob
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    above = {"quant_lib": ("tfx", "tfx_qat.components", "tfx_qat.pipelines", "benchmarks"),
             "components": ("tfx_qat.pipelines", "benchmarks"), "pipelines": ("benchmarks",)}
    graph = {}
    for floor, banned in above.items():
        for path in glob.glob(os.path.join(here, floor, "**", "*.py"), recursive=True):
            names = _imports(path)
            bad = sorted(n for n in names if any(n == b or n.startswith(b + ".") for b in banned)
                         or n.split(".")[0] in above)  # the old, collision-prone import path
            assert not bad, f"{os.path.relpath(path, here)} imports {bad}"
            if floor == "quant_lib":
                mod = os.path.relpath(path, os.path.join(here, floor))[:-3].replace(os.sep, ".")
                graph[mod.removesuffix(".__init__")] = {
                    n[len("tfx_qat.quant_lib."):] for n in names
                    if n.startswith("tfx_qat.quant_lib.")} - {mod}

    def reach(start):
        seen, todo = set(), list(graph.get(start, ()))
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo += graph.get(m, ())
        return seen
    cycles = sorted(m for m in graph if m in reach(m))
    assert not cycles, f"quant_lib modules on an import cycle: {cycles}"
    rooms = {m.split(".")[0] for m in graph} - {"__init__"}
    assert rooms == set(ROOMS), f"rooms {sorted(rooms)} vs ROOMS {ROOMS}: list a new room in order"
    upward = sorted(f"{m} -> {n}" for m, targets in graph.items() for n in targets
                    if m != "__init__" and ROOMS.index(n.split(".")[0]) > ROOMS.index(m.split(".")[0]))
    assert not upward, f"quant_lib rooms import upward (order {ROOMS}): {upward}"


def test_product_modules_stay_readable():
    """No product module over 450 lines: a bigger one is split by concern (quant_lib's rooms)."""
    import glob
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    long = {}
    for pkg in ("tfx_qat", "quant_lib", "components", "pipelines"):
        for path in glob.glob(os.path.join(here, pkg, "**", "*.py"), recursive=True):
            with open(path) as f:
                n = sum(1 for _ in f)
            if n > 450:
                long[os.path.relpath(path, here)] = n
    assert not long, long


def test_report_files_own_their_keys():
    """metrics.json / export_report.json keys are dataclass fields: a misspelled key is an error
    where it is written, an unknown one where it is read (naming the file)."""
    from tfx_qat.quant_lib.artifacts.report_files import ExportReport, Metrics
    m = Metrics(eval_split="eval", eval_examples=3, blessed=True, slices={"overall": {
        "examples": 3, "accuracy": {"float": 1.0, "int8": 2 / 3}, "per_class_accuracy": {"0": {
            "float": 1.0, "int8": 0.5, "support": 2, "paired": {
                "n": 2, "float_only": 1, "int8_only": 0, "diff_pt": -50.0,
                "interval_pt": [-90.0, 20.0], "resolution_pt": 50.0}}}}})
    assert Metrics.load(json.loads(json.dumps(m.to_json()))).to_json() == m.to_json()
    cls0 = m.overall.per_class_accuracy["0"]  # typed all the way down: attributes, not keys
    assert (m.overall.examples, cls0.support, cls0.accuracy["int8"]) == (3, 2, 0.5)
    assert cls0.paired.float_only == 1 and not cls0.paired.harmed
    with pytest.raises(ValueError, match=r"metrics.json: keys \['n'\] are not SliceReport"):
        Metrics(slices={"overall": {"n": 3}})
    assert "float_mae" not in m.to_json()  # not recorded: not written
    with pytest.raises(TypeError):
        Metrics(eval_splt="eval")  # pylint: disable=unexpected-keyword-arg
    with pytest.raises(ValueError, match=r"metrics.json: keys \['bogus'\]"):
        Metrics.load({"eval_split": "eval", "bogus": 1})
    with pytest.raises(ValueError, match="export_report.json"):
        ExportReport.load({"int8_bytes": 1})
    assert not ExportReport.load(None) and ExportReport(op_counts={"ADD": 1})
    prof = Metrics(op_profile={"int8": {"whole_us": 1.0, "ops_sum_us": 0.9, "by_op": [
        {"op": "ADD", "xnnpack": True, "count": 1, "us": 0.9}]}, "float": {"error": "cut"}})
    assert prof.op_profile.int8.by_op[0].op == "ADD" and prof.op_profile.float.error == "cut"
    assert Metrics.load(json.loads(json.dumps(prof.to_json()))) == prof
    # export_report.json's nested data: typed when written from dicts, every key kept (nulls too).
    verdict = {"index": 0, "op": "ADD", "version": 1, "supported": False,
               "predicted_on_tpu": False, "reasons": ["float"]}
    doc = {"parity": {"examples": 9, "top1_agreement": 1.0, "near_ties": 0, "rule": "top-1",
                      "max_abs_error": 0.1},
           "edgetpu": {"prediction": {"total_ops": 1, "predicted_on_tpu": 0, "predicted_on_cpu": 1,
                                      "first_unmapped": verdict, "ops": [verdict]},
                       "compile": {"status": "not_available", "compiler": None,
                                   "compiled_path": None, "log_path": None, "message": "",
                                   "parsed": None}},
           "qat_report": {"config": {"scheme": "default_8bit"}, "layers": [
               {"name": "d", "cls": "Dense", "decision": "quantized", "reason": ""}],
               "search": None, "base_model": None, "float_model": None, "training": None,
               "counts": None}}
    e = ExportReport.load(json.loads(json.dumps(doc)))
    assert e.to_json() == doc and e.parity.rule == "top-1"
    assert e.edgetpu.prediction.ops[0].op == "ADD" and e.qat_report.layers[0].cls == "Dense"
    with pytest.raises(ValueError, match=r"export_report.json: keys \['decison'\] are not"):
        ExportReport(qat_report={"config": {}, "layers": [{"decison": "float"}]})


def test_summary_json_is_owned_by_one_record():
    """summary.json (the CI interface): every key a RunSummary field, written even when null;
    nested parts typed; a key no field names is an error naming the file."""
    from tfx_qat.quant_lib.artifacts.run_summary import RunSummary
    doc = RunSummary(blessed=True, qat={"quantized_layers": 3, "search": {"status": "s"}},
                     per_class={"0": {"support": 2, "float": 1.0, "int8": 0.5, "delta_pt": -50.0,
                                      "interval_pt": [-90.0, -1.0]}}).to_json()
    back = RunSummary.load(json.loads(json.dumps(doc)))
    assert back.to_json() == doc and doc["float_accuracy"] is None and "pushed_path" in doc
    assert back.qat.search.status == "s" and back.per_class["0"].beyond_noise
    assert doc["per_class"]["0"]["float"] == 1.0 and doc["qat"]["folded_layers"] is None
    with pytest.raises(ValueError, match=r"summary.json: keys \['blesed'\]"):
        RunSummary.load({"blesed": True})


def test_product_functions_fit_on_a_screen():
    """No function of the product (quant_lib, components, pipelines) is longer than 80 lines."""
    import ast
    import glob
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    long = []
    for pkg in ("quant_lib", "components", "pipelines"):
        for path in glob.glob(os.path.join(root, pkg, "**", "*.py"), recursive=True):
            with open(path) as f:
                tree = ast.parse(f.read())
            long += [(os.path.relpath(path, root), n.name, n.end_lineno - n.lineno + 1)
                     for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef,
                                                               ast.AsyncFunctionDef))
                     and n.end_lineno - n.lineno + 1 > 80]
    assert not long, long


def test_node_properties_unwrap_what_tfx_and_kfp_v2_wrap():
    """MLMD values as plain Python: TFX's {"__value__": v} struct, and Kubeflow Pipelines v2's
    launcher's {"list": [...]} / {"struct": {...}} wrappers and numbers as doubles."""
    from ml_metadata.proto import metadata_store_pb2
    from tfx_qat.quant_lib.artifacts import records
    a = metadata_store_pb2.Artifact()
    a.custom_properties["n"].double_value = 3.0
    a.custom_properties["s"].string_value = "x"
    a.custom_properties["tfx"].struct_value.update({"__value__": 7})
    a.custom_properties["kl"].struct_value.update({"list": [1, 2]})
    a.custom_properties["ks"].struct_value.update({"struct": {"a": 1}})
    a.custom_properties["d"].struct_value.update({"a": 1, "list": 2})
    assert records.node_properties(a) == {"n": 3.0, "s": "x", "tfx": 7, "kl": [1, 2],
                                          "ks": {"a": 1}, "d": {"a": 1, "list": 2}}
    assert records.Pushed.from_properties({"pushed": 1.0, "pushed_version": "3"}).pushed is True
