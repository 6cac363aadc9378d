"""The pieces an everyday TFX tabular model needs, without a pipeline: builders with arguments
(QuantizationConfig.model_fn_kwargs), checkpoint mismatches that name the variables, dict-input
models, categorical id inputs (CategoryEncoding, Embedding) in QAT and in a full-integer TFLite
model, and Transform failures blamed on the Transform. Real TF/TFMOT/TFLite throughout."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfx_qat.components import inputs as component_inputs
from tfx_qat.quant_lib.config import ConfigError, FeatureSpec, QuantizationConfig
from tfx_qat.quant_lib.examples import inputs
from tfx_qat.quant_lib.qat import folds, layer_configs, models, plan as qat_plan, saving, train
from tfx_qat.quant_lib.qat.keras2 import QuantizationError
from tfx_qat.quant_lib.tflite import convert, flatbuffer, interpreter, validate

MODULE = '''
import tf_keras as keras


def build(hidden_units=None):
    i = {"a": keras.Input((3,), name="a")}
    x = i["a"]
    for units in hidden_units or [5, 4]:
        x = keras.layers.Dense(units, activation="relu")(x)
    return keras.Model(i, keras.layers.Dense(1, activation="sigmoid")(x))


def build_required(hidden_units):
    return build(hidden_units)


def build_tuned(hparams):
    return build([hparams.get("units")])


def hparams():
    import keras_tuner
    hp = keras_tuner.HyperParameters()
    hp.Fixed("units", 6)
    return hp
'''


@pytest.fixture()
def module(tmp_path):
    path = tmp_path / "user_module.py"
    path.write_text(MODULE)
    return {"module_file": str(path)}


def _cfg(**kw):
    return QuantizationConfig(data=FeatureSpec(label_key="y"), **kw)


def _units(model):
    return [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def test_model_fn_kwargs_reach_the_builder(module):
    build = component_inputs.model_builder(module, _cfg(model_fn="build", model_fn_kwargs={
        "hidden_units": [3, 2]}), None)
    assert _units(build()) == [3, 2, 1]
    # No kwargs: the builder's own defaults (hidden_units=None), not a hyperparameters error.
    assert _units(component_inputs.model_builder(module, _cfg(model_fn="build"), None)()) == \
        [5, 4, 1]
    # HyperParameters go only to a parameter that takes them.
    tuned = component_inputs.model_builder(module, _cfg(model_fn="build_tuned",
                                                        hparams_fn="hparams"), None)
    assert _units(tuned()) == [6, 1]


@pytest.mark.parametrize("kw, match", [
    (dict(model_fn="build_required"), r"needs 'hidden_units'.*model_fn_kwargs=\{'hidden_units'"),
    (dict(model_fn="build", model_fn_kwargs={"units": [3]}),
     r"model_fn_kwargs names \['units'\], which build\(hidden_units=None\) does not take"),
    (dict(model_fn="build_tuned"), r"needs 'hparams'.*hparams_fn"),
])
def test_builder_argument_errors_name_the_setting(module, kw, match):
    with pytest.raises(ValueError, match=match):
        component_inputs.model_builder(module, _cfg(**kw), None)


def test_model_fn_kwargs_config_checks():
    with pytest.raises(ConfigError, match=r"model_fn_kwargs: are arguments of model_fn"):
        _cfg(model_fn_kwargs={"hidden_units": [1]})
    with pytest.raises(ConfigError, match=r"model_fn_kwargs: values must be JSON"):
        _cfg(model_fn="build", model_fn_kwargs={"hidden_units": object()})
    cfg = _cfg(model_fn="build", model_fn_kwargs={"hidden_units": [16, 8]})
    assert QuantizationConfig.from_json(cfg.to_json()) == cfg


def test_rebuilt_model_that_does_not_fit_the_checkpoint_lists_the_differing_variables(
        module, tmp_path):
    saved = str(tmp_path / "saved")
    tf.saved_model.save(component_inputs.model_builder(
        module, _cfg(model_fn="build", model_fn_kwargs={"hidden_units": [3, 2]}), None)(), saved)
    wrong = component_inputs.model_builder(module, _cfg(model_fn="build"), None)
    with pytest.raises(QuantizationError) as e:
        models.load_float_model(saved, wrong)
    msg = str(e.value)
    assert "dense" in msg and "/kernel (3, 5) vs (3, 3)" in msg and "(5, 4) vs (3, 2)" in msg, msg
    assert "QuantizationConfig.model_fn_kwargs" in msg


def test_restored_call_of_a_dict_input_savedmodel_gets_a_dict(module, tmp_path):
    model = component_inputs.model_builder(module, _cfg(model_fn="build"), None)()
    saved = str(tmp_path / "saved")
    tf.saved_model.save(model, saved)
    x = {"a": np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)}
    out = models._saved_call(saved, models.structured(model, x), 4)  # pylint: disable=W0212
    np.testing.assert_allclose(out, model(x).numpy(), atol=1e-6)
    with pytest.raises(QuantizationError, match=r"cannot be called with the rebuilt model's "
                                                r"inputs \['b' float32 \[4, 3\]\]"):
        models._saved_call(saved, {"b": x["a"]}, 4)  # pylint: disable=W0212


@pytest.mark.parametrize("mode", ["one_hot", "multi_hot", "count"])
def test_one_hot_gather_computes_what_category_encoding_does(mode):
    ids = np.array([[0, 3, 3], [2, 1, 0], [4, 4, 4]], np.int32)
    if mode == "one_hot":
        ids = ids[:, :1]
    want = keras.layers.CategoryEncoding(5, output_mode=mode)(ids).numpy()
    np.testing.assert_array_equal(layer_configs.OneHotGather(5, mode)(ids).numpy(), want)


def _wide_deep(seed=0):
    keras.utils.set_random_seed(seed)
    ins = {"x": keras.Input((2,), name="x"), "cat": keras.Input((1,), name="cat", dtype="int32"),
           "tags": keras.Input((3,), name="tags", dtype="int32")}
    norm = keras.layers.Normalization()
    norm.adapt(np.random.default_rng(seed).normal(3.0, 2.0, size=(64, 2)).astype(np.float32))
    deep = keras.layers.Dense(8, activation="relu")(norm(ins["x"]))
    emb = keras.layers.Flatten()(keras.layers.Embedding(6, 3)(ins["cat"]))
    wide = keras.layers.concatenate([
        keras.layers.CategoryEncoding(6, output_mode="one_hot")(ins["cat"]),
        keras.layers.CategoryEncoding(5, output_mode="multi_hot")(ins["tags"])])
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.concatenate([deep, emb, wide]))
    return keras.Model(ins, out)


def _data(n=200, seed=1):
    rng = np.random.default_rng(seed)
    x = {"x": rng.normal(3.0, 2.0, size=(n, 2)).astype(np.float32),
         "cat": rng.integers(0, 6, size=(n, 1)).astype(np.int32),
         "tags": rng.integers(0, 5, size=(n, 3)).astype(np.int32)}
    y = ((x["x"][:, 0] > 3) ^ (x["cat"][:, 0] % 2 == 0)).astype(np.float32)
    return x, y


def test_categorical_ids_stay_integer_inputs_of_a_full_integer_model(tmp_path):
    """Dict inputs, int32 ids, CategoryEncoding, Embedding and an adapted Normalization: QAT
    annotates every layer, the model reloads from its SavedModel, and the full-integer TFLite
    model takes the ids as int32 (no quantization) and agrees with the QAT model."""
    model = _wide_deep()
    x, y = _data()
    model.compile("adam", "binary_crossentropy")
    model.fit(x, y, epochs=3, verbose=0)
    q, decisions = qat_plan.quantize_with_report(model, _cfg())
    assert isinstance(q._nested_inputs, dict)  # pylint: disable=protected-access
    plan = {d.cls: d.decision for d in decisions}
    assert {plan[c] for c in ("OneHotGather", "Normalization", "Embedding")} == {"quantized"}, plan
    # The rewritten float graph (GATHER one-hots, Normalization constants) is the same function.
    np.testing.assert_allclose(folds.rewrite_layers(model)(x).numpy(), model(x).numpy(), atol=1e-6)
    train.calibrate_ranges(q, [{k: v[:100] for k, v in x.items()}, {k: v[100:] for k, v in x.items()}])
    q.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    q.fit(x, y, epochs=2, verbose=0)
    saving.save_model(q, str(tmp_path / "qat"))
    q = saving.load_model(str(tmp_path / "qat"))
    data = convert.convert_int8(q, x)
    report = validate.inspect_integer(data)
    assert not report.problems, report.problems
    interp = tf.lite.Interpreter(model_content=data)
    details = interp.get_signature_runner("serving_default").get_input_details()
    assert {k: d["dtype"] for k, d in details.items()} == {
        "x": np.int8, "cat": np.int32, "tags": np.int32}
    ops = {d["op_name"] for d in interp._get_ops_details()}  # pylint: disable=protected-access
    assert "GATHER" in ops and "DENSE_BINCOUNT" not in ops, ops
    scores = interpreter.TFLiteClassifier(data).predict(x).ravel()
    keras_scores = q(x).numpy().ravel()
    assert np.max(np.abs(scores - keras_scores)) <= 2 / 255 + 1e-6
    # Within two steps, a side of 0.5 can differ only for a Keras score within two steps of it.
    near = np.abs(keras_scores - 0.5) <= 2 / 255 + 1e-6
    assert np.all(((scores > 0.5) == (keras_scores > 0.5)) | near)
    # The float reference converts too (CategoryEncoding's DenseBincount has no TFLite kernel).
    assert convert.convert_float(model)


def test_transform_failure_is_blamed_on_the_transform_not_the_data():
    ex = tf.train.Example()
    ex.features.feature["y"].int64_list.value.append(1)  # 'a' is missing: sparse, empty
    spec = {"a": tf.io.VarLenFeature(tf.float32), "y": tf.io.FixedLenFeature([], tf.int64)}

    def transform(raw):
        assert isinstance(raw["a"], tf.SparseTensor)  # handed over as parsed
        return {"a_xf": tf.reshape(raw["a"].values, [-1, 1]) + tf.zeros([2, 1])}

    adapter = inputs.FeatureAdapter(spec, "y", transform, "raw Examples + Transform graph T")
    with pytest.raises(inputs.TransformError) as e:
        adapter.parse(tf.constant([ex.SerializeToString()] * 3))
    msg = str(e.value)
    assert "the Transform (raw Examples + Transform graph T) failed" in msg
    assert "'a' sparse float32" in msg and "do not match" not in msg


def test_raw_features_reach_the_transform_as_parsed():
    full, empty = tf.train.Example(), tf.train.Example()
    for ex in (full, empty):
        ex.features.feature["y"].int64_list.value.append(0)
    full.features.feature["a"].float_list.value.append(2.5)
    spec = {"a": tf.io.VarLenFeature(tf.float32), "y": tf.io.FixedLenFeature([], tf.int64)}

    def fill(raw):  # TFX's _fill_in_missing
        a = raw["a"]
        dense = tf.sparse.to_dense(tf.SparseTensor(a.indices, a.values, [a.dense_shape[0], 1]),
                                   -1.0)
        return {"a_xf": dense}

    adapter = inputs.FeatureAdapter(spec, "y", fill, "T")
    feats, _ = adapter.parse(tf.constant([full.SerializeToString(), empty.SerializeToString()]))
    np.testing.assert_array_equal(feats["a_xf"].numpy().ravel(), [2.5, -1.0])
    serving = adapter.parse_for_serving(tf.constant([empty.SerializeToString()]))
    np.testing.assert_array_equal(serving["a_xf"].numpy().ravel(), [-1.0])


def test_a_lookup_layer_in_the_model_is_refused_naming_the_layer_and_the_transform_fix():
    keras.utils.set_random_seed(0)
    raw = keras.Input((1,), name="raw_id", dtype="int64")
    ids = keras.layers.IntegerLookup(vocabulary=[10, 20, 30], name="ids")(raw)
    out = keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.CategoryEncoding(4, output_mode="one_hot")(ids))
    model = qat_plan.quantize(keras.Model({"raw_id": raw}, out), _cfg())
    x = {"raw_id": np.array([[10], [20], [30], [40]], np.int64)}
    with pytest.raises(flatbuffer.ExportValidationError) as e:
        convert.convert_int8(model, x)
    msg = str(e.value)
    assert "LookupTableFind" in msg and "ids (IntegerLookup" in msg, msg
    assert "tft.compute_and_apply_vocabulary" in msg


def test_signature_runner_without_allocate_skips_xnnpack_which_the_evaluator_uses(digits_arrays):
    """Why an independent by-name loop can differ from QuantEvaluator by an example: Python's
    SignatureRunner on a fresh interpreter skips TFLite's lazily applied default delegate
    (XNNPACK) and runs the builtin kernels, which requantize some outputs one step differently;
    after ``allocate_tensors()`` it runs XNNPACK and matches the evaluator's runner bit for bit."""
    (xt, yt), (xe, _) = digits_arrays
    xt, xe = xt.reshape(len(xt), -1), xe.reshape(len(xe), -1)
    keras.utils.set_random_seed(0)
    inp = keras.Input((64,), name="image")
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Dense(32, activation="relu")(inp)))
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(xt, yt, epochs=3, verbose=0)
    data = convert.convert_int8(qat_plan.quantize(model), xt[:200])
    evaluator = interpreter.TFLiteClassifier(data)
    want = evaluator.predict(xe)
    step = evaluator.output_step

    def by_name(interp):
        runner = interp.get_signature_runner("serving_default")
        (name, d), = runner.get_input_details().items()
        (out, od), = runner.get_output_details().items()
        rows = [runner(**{name: interpreter.quantize_input(xe[i:i + 1], *d["quantization"],
                                                      np.int8)})[out] for i in range(len(xe))]
        return interpreter.dequantize(np.concatenate(rows), *od["quantization"]).reshape(len(xe), -1)

    fresh = by_name(tf.lite.Interpreter(model_content=data))
    builtin = by_name(tf.lite.Interpreter(
        model_content=data,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType
        .BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    np.testing.assert_array_equal(fresh, builtin)
    assert np.max(np.abs(fresh - want)) <= step * 1.001
    allocated = tf.lite.Interpreter(model_content=data)
    allocated.allocate_tensors()
    np.testing.assert_array_equal(by_name(allocated), want)
