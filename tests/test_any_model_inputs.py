"""Executors on models other than the built-in image CNN, with features matched by name
(FeatureSpec): a flat-vector model (as TFX's MNIST module builds), a two-input model (image + a side
feature) saved with ``tf.saved_model.save`` and rebuilt from its module's model function, and
feature/input mismatches that must fail before any training. Real digits data, real TFMOT/TFLite."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from tfx_qat.components import keys
from tfx_qat.components.integer_exporter.executor import Executor as ExporterExecutor
from tfx_qat.components.quant_evaluator.executor import Executor as EvaluatorExecutor
from tfx_qat.components.quantize_trainer.executor import Executor as QuantizeExecutor
from tfx_qat.components.utils import read_record, set_properties
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.config import EvalConfig, ExportConfig, FeatureSpec, QuantizationConfig
from tfx_qat.quant_lib.evaluation import metrics
from tfx_qat.quant_lib.examples.inputs import InputMismatchError
from tfx_qat.quant_lib.qat.keras2 import QuantizationError
from tfx_qat.quant_lib.tflite import interpreter

from conftest import clear_disagreements

FEATURES = FeatureSpec(label_key="label")
MODULE = '''
import tf_keras as keras


def build_two_input_model():
    image = keras.Input((8, 8, 1), name="image")
    ink = keras.Input((1,), name="ink")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(image)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Concatenate()([x, ink])
    x = keras.layers.Dense(32, activation="relu")(x)
    return keras.Model([image, ink], keras.layers.Dense(10)(x))


def build_other_model():
    image = keras.Input((8, 8, 1), name="image")
    ink = keras.Input((1,), name="ink")
    x = keras.layers.Concatenate()([keras.layers.Flatten()(image), ink])
    return keras.Model([image, ink], keras.layers.Dense(10)(x))
'''


def _artifact(cls, root):
    a = cls()
    a.uri = str(root)
    os.makedirs(a.uri, exist_ok=True)
    return a


def _write_split(path, x, y):
    """digits with the image flat (64 floats), a side feature 'ink' (mean intensity), a label."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as w:
        for xi, yi in zip(x, y):
            f = {"image": tf.train.Feature(float_list=tf.train.FloatList(value=xi.ravel())),
                 "ink": tf.train.Feature(float_list=tf.train.FloatList(value=[xi.mean()])),
                 "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(yi)]))}
            w.write(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())


@pytest.fixture(scope="module")
def ink_examples(digits_arrays, tmp_path_factory):
    from tfx.types import artifact_utils
    (xt, yt), (xe, ye) = digits_arrays
    ex = _artifact(standard_artifacts.Examples, tmp_path_factory.mktemp("ink_examples"))
    _write_split(os.path.join(ex.uri, "Split-train", "data.tfrecord"), xt, yt)
    _write_split(os.path.join(ex.uri, "Split-eval", "data.tfrecord"), xe, ye)
    ex.split_names = artifact_utils.encode_split_names(["train", "eval"])
    return ex


def _train(model, x, y, epochs=15):
    import tf_keras as keras
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    return model


def _run_all(examples, base, tmp_path, qat_cfg, qat_props=None):
    qat_out = _artifact(standard_artifacts.Model, tmp_path / "qat")
    QuantizeExecutor().Do({keys.EXAMPLES: [examples], keys.BASE_MODEL: [base]},
                          {keys.QAT_MODEL: [qat_out]},
                          {keys.CONFIG: qat_cfg.to_json(), **(qat_props or {})})
    int8 = _artifact(standard_artifacts.Model, tmp_path / "int8")
    ExporterExecutor().Do({keys.MODEL: [qat_out], keys.EXAMPLES: [examples]},
                          {keys.QUANTIZED_MODEL: [int8]},
                          {keys.CONFIG: ExportConfig(data=FEATURES).to_json()})
    return qat_out, int8, _evaluate(examples, base, int8, tmp_path)


def _evaluate(examples, float_model, int8, root):
    from tfx.dsl.components.base import base_beam_executor
    blessing = _artifact(standard_artifacts.ModelBlessing, root / "blessing")
    evaluation = _artifact(standard_artifacts.ModelEvaluation, root / "evaluation")
    EvaluatorExecutor(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=["--direct_running_mode=in_memory"])).Do(
        {keys.EXAMPLES: [examples], keys.MODEL: [float_model], keys.QUANTIZED_MODEL: [int8]},
        {keys.BLESSING: [blessing], keys.EVALUATION: [evaluation]},
        {keys.CONFIG: EvalConfig(data=FEATURES, max_accuracy_drop_pt=3.0).to_json()})
    return blessing


QAT = QuantizationConfig(data=FEATURES, epochs=2, batch_size=32)


def test_flat_vector_model(ink_examples, digits_arrays, tmp_path):
    """A model on the flat 64-value 'image' vector (TFX's MNIST module shape), features read
    off the records: quantized, exported, scored; the int8 model takes [1, 64]."""
    import tf_keras as keras
    (xt, yt), (xe, ye) = digits_arrays
    keras.utils.set_random_seed(0)
    inp = keras.Input((64,), name="image")
    model = _train(keras.Model(inp, keras.layers.Dense(10)(
        keras.layers.Dense(32, activation="relu")(inp))), xt.reshape(len(xt), -1), yt)
    base = _artifact(standard_artifacts.Model, tmp_path / "float")
    model.save(path_utils.serving_model_dir(base.uri), save_format="tf")
    _, int8, blessing = _run_all(ink_examples, base, tmp_path, QAT)
    contract = read_record(int8, records.Int8Model).input_contract
    assert [(c["name"], c["shape"], c["dtype"]) for c in contract] == [("image", [1, 64], "int8")]
    with open(os.path.join(int8.uri, "Format-Serving", "tflite"), "rb") as f:
        int8_acc = metrics.accuracy(interpreter.TFLiteClassifier(f.read()).predict(
            xe.reshape(len(xe), -1)), ye)
    assert read_record(blessing, records.Blessing).int8_accuracy == pytest.approx(int8_acc)
    assert int8_acc > 0.85
    assert read_record(blessing, records.Blessing).blessed == int(
        read_record(blessing, records.Blessing).accuracy_delta_pt <= 3.0)


def test_two_input_model_saved_with_tf_saved_model_save_is_rebuilt(ink_examples, digits_arrays,
                                                                   tmp_path):
    """image + 'ink' side feature; saved without Keras metadata, rebuilt from the module's model
    function, weights restored and proven; int8 inputs fed by name (not in converter order)."""
    import importlib.util
    (xt, yt), (xe, ye) = digits_arrays
    module_file = tmp_path / "two_input_module.py"
    module_file.write_text(MODULE)
    spec = importlib.util.spec_from_file_location("two_input_module", module_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    model = _train(mod.build_two_input_model(), {"image": xt, "ink": xt.mean(axis=(1, 2, 3))[:, None]},
                   yt)
    base = _artifact(standard_artifacts.Model, tmp_path / "float")
    tf.saved_model.save(model, path_utils.serving_model_dir(base.uri))
    assert not os.path.exists(os.path.join(path_utils.serving_model_dir(base.uri),
                                           "keras_metadata.pb"))
    qat_cfg = QuantizationConfig(data=FEATURES, epochs=2, batch_size=32,
                                 model_fn="build_two_input_model")
    qat_out, int8, blessing = _run_all(ink_examples, base, tmp_path, qat_cfg,
                                       {"module_file": str(module_file)})
    assert read_record(qat_out, records.QatModel).float_model_source == "rebuilt"
    assert read_record(qat_out, records.QatModel).restore_max_abs_diff < 1e-4
    contract = {c["name"]: c for c in read_record(int8, records.Int8Model).input_contract}
    assert {k: c["shape"] for k, c in contract.items()} == {"image": [1, 8, 8, 1], "ink": [1, 1]}
    assert contract["image"]["scale"] != contract["ink"]["scale"]  # each input its own scale
    ink = xe.mean(axis=(1, 2, 3))[:, None]
    with open(os.path.join(int8.uri, "Format-Serving", "tflite"), "rb") as f:
        int8_acc = metrics.accuracy(interpreter.TFLiteClassifier(f.read()).predict(
            {"ink": ink, "image": xe}), ye)
    assert read_record(blessing, records.Blessing).float_accuracy > 0.9
    assert int8_acc > 0.85
    assert read_record(blessing, records.Blessing).int8_accuracy == pytest.approx(int8_acc)
    x = read_record(int8, records.Int8Model)
    assert x.parity_top1_agreement >= 0.9 and clear_disagreements(
        x.parity_top1_agreement, x.parity_near_ties, x.parity_examples) <= 2

    # A float SavedModel whose serving_default cannot take these Examples (it parses a feature
    # they lack): one clear error before Beam, and no blessing written.
    class Parses(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            f = tf.io.parse_example(examples, {"pixels": tf.io.FixedLenFeature([64], tf.float32)})
            return {"outputs": tf.tile(tf.reduce_sum(f["pixels"], 1, keepdims=True), [1, 10])}

    other = _artifact(standard_artifacts.Model, tmp_path / "other_float")
    parses = Parses()
    tf.saved_model.save(parses, path_utils.serving_model_dir(other.uri),
                        signatures={"serving_default": parses.serve})
    with pytest.raises(ValueError, match=r"float model's serving_default .* cannot score these "
                                         r"Examples: .*pixels"):
        _evaluate(ink_examples, other, int8, tmp_path / "other")
    assert os.listdir(tmp_path / "other" / "blessing") == []


def test_wrong_model_fn_is_refused_before_training(ink_examples, digits_arrays, tmp_path):
    """A model function that builds a different architecture: the restore or its proof fails,
    naming the field, and no QAT model is written."""
    import tf_keras as keras
    (xt, yt), _ = digits_arrays
    module_file = tmp_path / "m.py"
    module_file.write_text(MODULE)
    image, ink = keras.Input((8, 8, 1), name="image"), keras.Input((1,), name="ink")
    x = keras.layers.Concatenate()([keras.layers.Flatten()(image), ink])
    x = keras.layers.Dense(10)(keras.layers.Dense(16, activation="relu")(x))
    model = _train(keras.Model([image, ink], x),
                   {"image": xt, "ink": xt.mean(axis=(1, 2, 3))[:, None]}, yt, epochs=1)
    base = _artifact(standard_artifacts.Model, tmp_path / "float")
    tf.saved_model.save(model, path_utils.serving_model_dir(base.uri))
    out = _artifact(standard_artifacts.Model, tmp_path / "qat")
    cfg = QuantizationConfig(data=FEATURES, model_fn="build_other_model")
    with pytest.raises(QuantizationError, match="QuantizationConfig.model_fn"):
        QuantizeExecutor().Do({keys.EXAMPLES: [ink_examples], keys.BASE_MODEL: [base]},
                              {keys.QAT_MODEL: [out]},
                              {keys.CONFIG: cfg.to_json(), "module_file": str(module_file)})
    assert not os.path.exists(path_utils.serving_model_dir(out.uri))
    # Without model_fn the error says how to fix it.
    with pytest.raises(QuantizationError, match="set QuantizationConfig.model_fn"):
        QuantizeExecutor().Do({keys.EXAMPLES: [ink_examples], keys.BASE_MODEL: [base]},
                              {keys.QAT_MODEL: [out]},
                              {keys.CONFIG: QuantizationConfig(data=FEATURES).to_json()})


def test_feature_input_mismatch_fails_before_training(ink_examples, tmp_path):
    import tf_keras as keras
    inp = keras.Input((32,), name="image")  # the data has 64 values per example
    model = keras.Model(inp, keras.layers.Dense(10)(inp))
    base = _artifact(standard_artifacts.Model, tmp_path / "float")
    model.save(path_utils.serving_model_dir(base.uri), save_format="tf")
    out = _artifact(standard_artifacts.Model, tmp_path / "qat")
    with pytest.raises(InputMismatchError, match=r"model input 'image' \[32\] float32 takes 32 "
                                                 r"value\(s\) per example but feature 'image'"):
        QuantizeExecutor().Do({keys.EXAMPLES: [ink_examples], keys.BASE_MODEL: [base]},
                              {keys.QAT_MODEL: [out]},
                              {keys.CONFIG: QuantizationConfig(data=FEATURES).to_json()})
    assert not os.path.exists(path_utils.serving_model_dir(out.uri))
    # Two inputs, one named after no feature: matched by name, so the error lists both sides.
    a, b = keras.Input((64,), name="image"), keras.Input((1,), name="thickness")
    two = keras.Model([a, b], keras.layers.Dense(10)(keras.layers.Concatenate()([a, b])))
    two.save(path_utils.serving_model_dir(base.uri), save_format="tf")
    with pytest.raises(InputMismatchError, match=r"(?s)model inputs \['image' \[64\] float32, "
                                                 r"'thickness' \[1\] float32\].*no feature named "
                                                 r"\['thickness'\]"):
        QuantizeExecutor().Do({keys.EXAMPLES: [ink_examples], keys.BASE_MODEL: [base]},
                              {keys.QAT_MODEL: [out]},
                              {keys.CONFIG: QuantizationConfig(data=FEATURES).to_json()})
    assert not os.path.exists(path_utils.serving_model_dir(out.uri))


def test_model_fn_reaches_into_the_modules_imports_tfx_mnist():
    """TFX's MNIST module builds its model in the base module it imports: model_fn
    'base.build_keras_model' finds it; the flat (784,) input is described by name and TFMOT
    quantizes the Sequential model as built (no training here)."""
    import tfx.examples.mnist as mnist
    from tfx_qat.components.inputs import module_fn
    from tfx_qat.quant_lib.examples.inputs import ModelInput, keras_inputs
    from tfx_qat.quant_lib.qat import plan
    module_file = os.path.join(os.path.dirname(mnist.__file__), "mnist_utils_native_keras.py")
    build = module_fn({"module_file": module_file}, "base.build_keras_model",
                      "QuantizationConfig.model_fn")
    model = build()
    assert keras_inputs(model) == [ModelInput("image_floats_xf", (784,), "float32")]
    _, decisions = plan.quantize_with_report(model)
    assert [d.cls for d in decisions if d.decision == plan.QUANTIZE].count("Dense") == 3
    assert not [d for d in decisions if d.decision == plan.FLOAT]
    with pytest.raises(ValueError, match="QuantizationConfig.model_fn='base.no_such_fn'"):
        module_fn({"module_file": module_file}, "base.no_such_fn", "QuantizationConfig.model_fn")


def test_match_rules_without_training():
    """The matching rules on their own: one input + one feature pair whatever the names; several
    go by name; strings are refused with the fix; element counts must agree."""
    from tfx_qat.quant_lib.examples.inputs import ModelInput, match
    feats = {"pixels": tf.zeros([2, 64]), "ink": tf.zeros([2, 1])}
    assert match([ModelInput("input_1", (8, 8, 1), "float32")], {"pixels": feats["pixels"]},
                 "x") == {"input_1": "pixels"}
    assert match([ModelInput("pixels", (64,), "float32"), ModelInput("ink", (1,), "float32")],
                 feats, "x") == {"pixels": "pixels", "ink": "ink"}
    with pytest.raises(InputMismatchError, match="holds strings: map them to numbers"):
        match([ModelInput("name", (1,), "float32")], {"name": tf.constant([[b"a"], [b"b"]])}, "x")
    with pytest.raises(InputMismatchError, match=r"takes 63 value\(s\) per example"):
        match([ModelInput("pixels", (63,), "float32")], {"pixels": feats["pixels"]}, "x")
