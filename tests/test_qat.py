"""QuantizeTrainer's QAT coverage: layer plans, strict mode, nested models, schemes, and the exact
folding of each supported block pattern (QAT-Keras vs int8 TFLite within one quantization step)."""
import os

import numpy as np
import pytest
import tf_keras as keras

from tfx_qat.quant_lib.config import QuantizationConfig
from tfx_qat.quant_lib.qat import folds, keras2, plan, saving, train
from tfx_qat.quant_lib.tflite import convert, flatbuffer, interpreter, validate

L = keras.layers


def _x(n=256, shape=(8, 8, 3), seed=0):
    return np.random.RandomState(seed).uniform(0, 1, size=(n,) + shape).astype(np.float32)


def _unsupported_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(inp)))
    x = L.Reshape((64, 8))(x)
    x = L.LayerNormalization(name="ln")(x)
    x = L.Conv1D(4, 3, name="c1d")(x)
    x = L.PReLU(name="prelu")(x)
    out = L.Dense(3)(L.GlobalAveragePooling1D()(x))
    return keras.Model(inp, out)


def test_unsupported_layers_stay_float_in_non_strict_mode_and_are_reported():
    model = _unsupported_model()
    q, decisions = plan.quantize_with_report(model)
    by_name = {d.name: d for d in decisions}
    assert by_name["prelu"].decision == "float" and "not supported" in by_name["prelu"].reason
    # An explicit decision, with TFLite's reason, is not "unsupported".
    assert by_name["ln"].decision == "float" and "no int8 layer-norm kernel" in by_name["ln"].reason
    assert by_name["c1d"].decision == "quantized" and "CONV_2D" in by_name["c1d"].reason
    assert [d.decision for d in decisions if d.cls == "BatchNormalization"] == ["folded"]
    assert sum(d.decision == "quantized" for d in decisions) >= 4
    wrapped = {type(layer).__name__ for layer in q.layers}
    assert "QuantizeWrapperV2" in wrapped and {"LayerNormalization", "PReLU"} <= wrapped
    # The converter calibrates the float islands, so the export is still full-integer.
    validate.validate_integer(convert.convert_int8(q, _x(32, (8, 8, 1))))


def test_strict_mode_fails_naming_the_layer_and_the_fix():
    with pytest.raises(keras2.QuantizationError,
                       match=r"layer 'prelu' \(PReLU\).*strict=True.*keep_float_names"):
        plan.quantize(_unsupported_model(), QuantizationConfig(strict=True))
    # Keeping the unsupported layers float explicitly satisfies strict mode.
    cfg = QuantizationConfig(strict=True, keep_float_names=("prelu",),
                             keep_float_types=("Conv1D",))
    _, decisions = plan.quantize_with_report(_unsupported_model(), cfg)
    assert {d.name: d.reason for d in decisions}["c1d"] == "keep_float_types"


def test_keep_float_regex_selects_layers():
    cfg = QuantizationConfig(keep_float_regex=(r"^dense",))
    _, decisions = plan.quantize_with_report(_unsupported_model(), cfg)
    assert [d.reason for d in decisions if d.cls == "Dense"] == ["keep_float_regex"]


def test_only_unsupported_layers_is_an_error():
    inp = keras.Input((4, 8))
    model = keras.Model(inp, L.LayerNormalization()(inp))
    with pytest.raises(keras2.QuantizationError, match="no layer .* can be quantized"):
        plan.quantize(model)


def _backbone():
    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 3))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(inp)))
    return keras.Model(inp, L.GlobalAveragePooling2D()(x), name="backbone")


@pytest.mark.parametrize("outer", ["sequential", "functional"])
def test_nested_backbone_is_flattened_and_quantizes(outer):
    backbone = _backbone()
    if outer == "sequential":
        model = keras.Sequential([backbone, L.Dense(4)])
    else:
        inp = keras.Input((8, 8, 3))
        model = keras.Model(inp, L.Dense(4)(backbone(inp)))
    x = _x(64)
    flat = folds.flatten_nested(model)
    assert not any(isinstance(layer, keras.Model) for layer in flat.layers)
    np.testing.assert_array_equal(flat.predict(x, verbose=0), model.predict(x, verbose=0))
    q, decisions = plan.quantize_with_report(model)
    assert {d.cls for d in decisions if d.decision == "quantized"} >= {"Conv2D", "Dense"}
    validate.validate_integer(convert.convert_int8(q, x[:32]))


def _fit(q, x, seed=0):
    y = np.random.RandomState(seed).randint(0, 4, size=len(x))
    train.compile_for_training(q, 1e-3)
    q.fit(x, y, epochs=2, batch_size=32, verbose=0)


def _pattern(name):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    if name == "conv_bn_relu":
        x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(inp)))
        x = L.GlobalAveragePooling2D()(x)
    elif name == "dwconv_bn_relu6":
        x = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same",
                                                                  use_bias=False)(inp)))
        x = L.GlobalAveragePooling2D()(x)
    elif name == "dense":
        x = L.Dense(16, activation="relu")(L.Flatten()(inp))
    elif name == "add_residual":
        a = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(inp)))
        b = L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(a))
        x = L.GlobalAveragePooling2D()(L.ReLU()(L.Add()([a, b])))
    elif name == "concatenate":
        a = L.ReLU()(L.Conv2D(4, 1)(inp))
        b = L.ReLU()(L.Conv2D(4, 3, padding="same")(inp))
        x = L.GlobalAveragePooling2D()(L.Concatenate()([a, b]))
    else:
        raise ValueError(name)
    return keras.Model(inp, L.Dense(4)(x), name=name)


@pytest.mark.parametrize("pattern", ["conv_bn_relu", "dwconv_bn_relu6", "dense", "add_residual",
                                     "concatenate"])
def test_block_pattern_folds_exactly(pattern):
    """QAT simulates the int8 arithmetic: TFLite outputs agree within one output step.
    (GlobalAveragePooling appears in every pattern but dense.)"""
    x = _x()
    q, decisions = plan.quantize_with_report(_pattern(pattern))
    assert not [d for d in decisions if d.decision == "float"], decisions
    # A folded BN is left to TFMOT's fold transform, never given a config of its own.
    assert not [layer.name for layer in q.layers if type(getattr(layer, "layer", None)).__name__
                == "BatchNormalization" and type(layer.quantize_config).__name__ ==
                "OutputQuantizeConfig"]
    _fit(q, x)
    runner = interpreter.TFLiteClassifier(convert.convert_int8(q, x[:128]))
    got, want = runner.predict(x[128:]), q.predict(x[128:], verbose=0)
    step = runner._out["quantization"][0]  # pylint: disable=protected-access
    err = np.abs(got - want).max()
    assert err <= step * 1.0001 + 1e-6, f"{pattern}: max error {err:.5f} > one step {step:.5f}"


@pytest.mark.parametrize("pattern", ["conv_bn_relu", "dwconv_bn_relu6", "add_residual",
                                     "concatenate"])
def test_per_tensor_qat_is_exact_with_one_scale_per_weight_tensor(pattern):
    """Per-tensor: BN is folded into the kernel before QAT and every kernel is fake-quantized,
    so the trained model (non-trivial BN statistics) converts exactly, one scale per tensor."""
    x = _x()
    cfg = QuantizationConfig(per_tensor=True)
    q, decisions = plan.quantize_with_report(_pattern(pattern), cfg)
    assert not [d for d in decisions if d.decision == "float"], decisions
    assert all("before QAT" in d.reason for d in decisions if d.cls == "BatchNormalization")
    assert "BatchNormalization" not in {type(layer.layer).__name__ for layer in q.layers
                                        if hasattr(layer, "layer")}
    _fit(q, x)
    model_bytes = convert.convert_int8(q, x[:128], per_channel=False)
    assert set(validate.weight_scale_counts(model_bytes).values()) == {1}
    runner = interpreter.TFLiteClassifier(model_bytes)
    err = np.abs(runner.predict(x[128:]) - q.predict(x[128:], verbose=0)).max()
    step = runner._out["quantization"][0]  # pylint: disable=protected-access
    assert err <= step * 1.0001 + 1e-6, f"{pattern}: max error {err:.5f} > one step {step:.5f}"


def test_fold_batch_norms_keeps_inference_outputs():
    model = _pattern("add_residual")
    _fit(model, _x(64))  # moves the BN statistics away from their initial values
    folded, into = folds.fold_batch_norms(model)
    assert len(into) == 2 and not any(type(layer).__name__ == "BatchNormalization"
                                      for layer in folded.layers)
    assert all(folded.get_layer(conv).use_bias for conv in into.values())
    x = _x(32, seed=3)
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("per_tensor", [False, True])
def test_bn_with_nothing_to_fold_into_is_quantized_on_its_own(per_tensor):
    """A BN after an activation cannot be folded: it runs as int8 MUL + ADD, simulated in QAT."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = L.BatchNormalization(name="bn")(L.Conv2D(8, 3, activation="relu", name="c")(inp))
    model = keras.Model(inp, L.Dense(4)(L.GlobalAveragePooling2D()(x)))
    x = _x()
    q, decisions = plan.quantize_with_report(model, QuantizationConfig(per_tensor=per_tensor,
                                                                      strict=True))
    bn = {d.name: d for d in decisions}["bn"]
    assert bn.decision == "quantized" and "MUL + ADD" in bn.reason, bn
    _fit(q, x)
    model_bytes = convert.convert_int8(q, x[:128], per_channel=not per_tensor)
    assert validate.validate_integer(model_bytes).op_counts["MUL"] == 1
    runner = interpreter.TFLiteClassifier(model_bytes)
    err = np.abs(runner.predict(x[128:]) - q.predict(x[128:], verbose=0)).max()
    assert err <= runner._out["quantization"][0] * 1.0001 + 1e-6  # pylint: disable=protected-access


def test_relu_layer_after_a_weight_layer_keeps_its_weights_quantized():
    """TFMOT's own transform would give the Conv2D a no-op config (float weights in QAT)."""
    model = _pattern("concatenate")
    q = plan.quantize(model)
    assert all(layer.activation.__name__ == "linear" for layer in model.layers
               if isinstance(layer, L.Conv2D))  # the float model is left as it was
    convs = [layer for layer in q.layers if type(getattr(layer, "layer", None)).__name__ == "Conv2D"]
    assert len(convs) == 2
    for wrapper in convs:
        assert type(wrapper.quantize_config).__name__ != "NoOpQuantizeConfig"
        assert any("kernel" in w.name for w, _, _ in wrapper._weight_vars)  # noqa: E501  pylint: disable=protected-access


def test_n_bit_scheme_gives_4_bit_weights():
    x = _x()
    cfg = QuantizationConfig(scheme="n_bit", weight_bits=4, activation_bits=8)
    q, decisions = plan.quantize_with_report(_pattern("dense"), cfg)
    assert all(d.reason != "not supported by the n_bit scheme" for d in decisions)
    _fit(q, x)
    model_bytes = convert.convert_int8(q, x[:64])
    m = flatbuffer.read_flatbuffer(model_bytes)
    _, _, types = flatbuffer.schema_names()
    weight_types = {types[t.type] for t in m.subgraphs[0].tensors
                    if t.buffer > 0 and m.buffers[t.buffer].data is not None and
                    types[t.type] not in ("INT32",)}
    assert weight_types == {"INT4"}, weight_types  # TFLite packs the 4-bit QAT weights
    runner = interpreter.TFLiteClassifier(model_bytes)
    err = np.abs(runner.predict(x[128:]) - q.predict(x[128:], verbose=0)).max()
    assert err <= runner._out["quantization"][0] * 1.0001 + 1e-6  # pylint: disable=protected-access


def test_exporter_refuses_a_per_tensor_export_whose_weights_were_not_quantized_in_qat():
    """Raw TFMOT's transform leaves these Conv2D weights float: converted per-tensor, they come
    out per-channel (PTQ), which IntegerExporter refuses instead of publishing."""
    import tensorflow_model_optimization as tfmot
    from tfx_qat.quant_lib.config import ExportConfig
    from tfx_qat.quant_lib.tflite import export
    qk = tfmot.quantization.keras
    with qk.quantize_scope():
        q = qk.quantize_apply(qk.quantize_annotate_model(_pattern("concatenate")),
                              qk.default_8bit.Default8BitQuantizeScheme(disable_per_axis=True))
    with pytest.raises(flatbuffer.ExportValidationError, match="per-channel scales for 2 weight"):
        export.convert_and_verify(q, _x(32), ExportConfig(), per_channel=False)
    ours = export.convert_and_verify(plan.quantize(_pattern("concatenate"), QuantizationConfig(
        per_tensor=True)), _x(32), ExportConfig(), per_channel=False)
    assert set(validate.weight_scale_counts(ours.int8_bytes).values()) == {1}
    # No parity run yet (ExportConfig.parity_examples=0 leaves it so): the export report and the
    # artifact's record say so, typed, instead of failing on an empty parity.
    from tfx_qat.quant_lib.artifacts.report_files import ExportReport
    assert ours.parity is None and ours.to_properties().parity_top1_agreement is None
    assert ExportReport(**ours.report()).to_json()["int8_tflite_bytes"] == len(ours.int8_bytes)


def _hard_sigmoid(x):  # as tf_keras.applications' MobileNetV3 builds it: TFOpLambda add/multiply
    return L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)


def _mobile_block(name):
    keras.utils.set_random_seed(0)
    inp = keras.Input((64, 3) if name == "conv1d" else (8, 8, 3))
    x = inp
    if name == "hard_swish_squeeze_excite":  # MobileNetV3
        x = L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(x))
        x = L.Multiply()([x, _hard_sigmoid(x)])
        s = L.GlobalAveragePooling2D(keepdims=True)(x)
        s = _hard_sigmoid(L.Conv2D(8, 1)(L.ReLU()(L.Conv2D(4, 1)(s))))
        x = L.GlobalAveragePooling2D()(L.Multiply()([x, s]))
    elif name == "swish_squeeze_excite":  # EfficientNet
        x = L.Activation("swish")(L.BatchNormalization()(L.Conv2D(8, 3, padding="same",
                                                                   use_bias=False)(x)))
        s = L.Reshape((1, 1, 8))(L.GlobalAveragePooling2D()(x))
        s = L.Conv2D(8, 1, activation="sigmoid")(L.Conv2D(4, 1, activation="swish")(s))
        x = L.GlobalAveragePooling2D()(L.Multiply()([x, s]))
    elif name == "rescaling":
        x = L.Rescaling(1 / 127.5, offset=-1.0)(x)
        x = L.GlobalAveragePooling2D()(L.ReLU()(L.Conv2D(8, 3)(x)))
    elif name == "normalization":
        x = L.Normalization(mean=[100.0, 120.0, 90.0], variance=[3000.0, 2500.0, 2000.0])(x)
        x = L.GlobalAveragePooling2D()(L.ReLU()(L.Conv2D(8, 3)(x)))
    elif name == "conv1d":  # keyword spotting
        x = L.GlobalAveragePooling1D()(L.Conv1D(8, 3, activation="relu")(x))
    else:
        raise ValueError(name)
    return keras.Model(inp, L.Dense(4)(x), name=name)


@pytest.mark.parametrize("per_tensor", [False, True])
@pytest.mark.parametrize("block", ["hard_swish_squeeze_excite", "swish_squeeze_excite",
                                   "rescaling", "normalization", "conv1d"])
def test_mobile_block_is_quantized_and_exact(block, per_tensor):
    """Each layer config of layer_configs: quantized in QAT (no float layer left), and the trained
    block's int8 TFLite agrees with the QAT model within one output step."""
    model = _mobile_block(block)
    shape = (256,) + tuple(model.input_shape[1:])
    scale = 255.0 if block in ("rescaling", "normalization") else 1.0
    x = np.random.RandomState(0).uniform(0, scale, size=shape).astype(np.float32)
    q, decisions = plan.quantize_with_report(model, QuantizationConfig(per_tensor=per_tensor,
                                                                      strict=True))
    assert not [d for d in decisions if d.decision == "float"], decisions
    tfx_qat = {d.cls for d in decisions if d.reason.startswith("tfx-qat config")}
    assert tfx_qat, "the block should exercise a tfx-qat config"
    _fit(q, x)
    model_bytes = convert.convert_int8(q, x[:128], per_channel=not per_tensor)
    validate.validate_integer(model_bytes)
    runner = interpreter.TFLiteClassifier(model_bytes)
    err = np.abs(runner.predict(x[128:]) - q.predict(x[128:], verbose=0)).max()
    step = runner._out["quantization"][0]  # pylint: disable=protected-access
    assert err <= step * 1.0001 + 1e-6, f"{block}: max error {err:.5f} > one step {step:.5f}"


@pytest.mark.parametrize("app", ["MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0"])
def test_mobile_applications_leave_no_layer_float(app):
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, app)(weights=None, input_shape=(32, 32, 3), classes=10)
    q, decisions = plan.quantize_with_report(model, QuantizationConfig(strict=True))
    assert not [d for d in decisions if d.decision == "float"]
    assert {"Multiply", "Rescaling"} <= {d.cls for d in decisions
                                          if d.reason.startswith("tfx-qat config")}
    if app == "MobileNetV3Small":  # the export of one is enough here (~1 min on 2 cores)
        from tfx_qat.quant_lib.tflite import edgetpu
        x = np.random.RandomState(0).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
        model_bytes = convert.convert_int8(q, x)
        validate.validate_integer(model_bytes)
        assert edgetpu.analyze(model_bytes).predicted_on_cpu == 0  # ADD/MUL/RELU6: Coral's table


def test_qat_model_with_layer_configs_saves_and_loads(tmp_path):
    """What QuantizeTrainer writes and IntegerExporter reads: the ScalarOp layers and tfx-qat's
    quantize configs survive a SavedModel round trip."""
    x = _x(32)
    q = plan.quantize(_mobile_block("hard_swish_squeeze_excite"))
    q(x, training=True)  # moves the activation ranges off their initial values
    saving.save_model(q, str(tmp_path / "qat"))
    loaded = saving.load_model(str(tmp_path / "qat"))
    assert {"ScalarOp", "Multiply"} <= {type(getattr(layer, "layer", layer)).__name__
                                        for layer in loaded.layers}
    np.testing.assert_allclose(loaded.predict(x, verbose=0), q.predict(x, verbose=0), atol=1e-6)


class _Doubler(L.Layer):  # a user's layer, registered nowhere: only its traces can rebuild it
    def call(self, x):
        return 2.0 * x


def test_autograph_skips_tf_keras_code_and_still_converts_the_users():
    """tfx_qat.quant_lib.internals' AutoGraph rule (installed by qat): TF 2.16 converted tf_keras's own
    source on every model's first trace (15 s of make run's first training step)."""
    from tensorflow.python.autograph.core import config
    from tensorflow.python.autograph.impl import conversion
    from tfx_qat.quant_lib import internals
    assert conversion.is_allowlisted(keras.Model.train_step)
    assert conversion.is_allowlisted(L.BatchNormalization.call)
    assert not conversion.is_allowlisted(_Doubler.call)  # a user's layer: converted as before
    n = len(config.CONVERSION_RULES)
    internals.install()
    assert len(config.CONVERSION_RULES) == n


def _functions(path):
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    return [f.signature.name for f in sm.meta_graphs[0].graph_def.library.function]


def test_models_rebuildable_from_config_are_saved_without_traces_others_with(tmp_path):
    """Per-layer call traces are left out only when Keras can rebuild every layer from its config
    (they cost seconds to write and read); the serving signature stays either way. A user's own
    layer keeps them, so the model still loads where its class is not importable."""
    import tensorflow as tf
    x = _x(8)
    builtin = plan.quantize(_mobile_block("hard_swish_squeeze_excite"))
    inp = keras.Input((8, 8, 3))
    custom = keras.Model(inp, L.Dense(2)(_Doubler()(inp)))
    assert saving.revives_from_config(builtin) and not saving.revives_from_config(custom)
    for name, model in (("builtin", builtin), ("custom", custom)):
        saving.save_model(model, str(tmp_path / name))
        serve = tf.saved_model.load(str(tmp_path / name)).signatures["serving_default"]
        out = next(iter(serve(**{model.inputs[0].name.split(":")[0]: tf.constant(x)}).values()))
        np.testing.assert_allclose(out.numpy(), model.predict(x, verbose=0), atol=1e-5)
    traced = lambda name: [f for f in _functions(str(tmp_path / name))  # noqa: E731
                           if "layer_call_and_return_conditional_losses" in f]
    assert not traced("builtin") and traced("custom")
    loaded = saving.load_model(str(tmp_path / "custom"))
    assert not isinstance(loaded.layers[1], _Doubler)  # revived from its trace, not the class
    np.testing.assert_allclose(loaded.predict(x, verbose=0), custom.predict(x, verbose=0),
                               atol=1e-6)


def test_every_graph_rebuild_keeps_a_dict_input_model_a_dict_input_model():
    """tfx_qat.quant_lib.qat.graph.rebuild is the one rebuild: flattening a nested model, the layer rewrites
    (x * constant -> ScalarOp), BN folding and the scale folds (zero padding into a "same"
    convolution) each keep a dict-input model's inputs a dict, and its outputs."""
    from tfx_qat.quant_lib.qat import graph, scale_fold
    keras.utils.set_random_seed(0)
    img, tab = keras.Input((8, 8, 1), name="img"), keras.Input((4,), name="tab")
    x = L.ZeroPadding2D(1)(img)
    x = L.BatchNormalization(name="bn")(L.Conv2D(4, 3, name="conv")(x))
    x = L.Flatten()(L.ReLU()(x))
    head = keras.Sequential([keras.Input((4,)), L.Dense(4, name="inner")], name="sub")
    t = head(tab) * 0.5
    model = keras.Model({"img": img, "tab": tab}, L.Dense(3)(L.Concatenate()([x, t])))
    rng = np.random.RandomState(0)
    data = {"img": rng.rand(16, 8, 8, 1).astype(np.float32),
            "tab": rng.rand(16, 4).astype(np.float32)}
    bn = model.get_layer("bn")
    bn.set_weights([w + rng.rand(*w.shape).astype(np.float32) for w in bn.get_weights()])
    want = model.predict(data, verbose=0)
    flat = folds.flatten_nested(model)
    steps = {"flatten_nested": flat, "rewrite_layers": folds.rewrite_layers(flat),
             "fold_batch_norms": folds.fold_batch_norms(flat)[0],
             "fold_zero_padding": scale_fold.fold_zero_padding(flat)[0],
             "rebuild": graph.rebuild(model)}
    assert "sub" not in [layer.name for layer in flat.layers]
    assert not any(type(layer).__name__ == "TFOpLambda" for layer in steps["rewrite_layers"].layers)
    assert "bn" not in [layer.name for layer in steps["fold_batch_norms"].layers]
    assert not any(type(layer).__name__ == "ZeroPadding2D"
                   for layer in steps["fold_zero_padding"].layers)
    for name, m in steps.items():
        assert isinstance(m.input, dict) and sorted(m.input) == ["img", "tab"], name
        np.testing.assert_allclose(m.predict(data, verbose=0), want, rtol=1e-4, atol=1e-5,
                                   err_msg=name)
