"""QuantizeTrainer's QAT coverage: layer plans, strict mode, nested models, schemes, and the exact
folding of each supported block pattern (QAT-Keras vs int8 TFLite within one quantization step)."""
import numpy as np
import pytest
import tf_keras as keras

from quant_lib import qat, tflite
from quant_lib.config import QuantizationConfig

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
    out = L.Dense(3)(L.GlobalAveragePooling1D()(x))
    return keras.Model(inp, out)


def test_unsupported_layers_stay_float_in_non_strict_mode_and_are_reported():
    model = _unsupported_model()
    q, decisions = qat.quantize_with_report(model)
    by_name = {d.name: d for d in decisions}
    assert by_name["ln"].decision == "float" and "not supported" in by_name["ln"].reason
    assert by_name["c1d"].decision == "float"
    assert [d.decision for d in decisions if d.cls == "BatchNormalization"] == ["folded"]
    assert sum(d.decision == "quantized" for d in decisions) >= 4
    wrapped = {type(layer).__name__ for layer in q.layers}
    assert "QuantizeWrapperV2" in wrapped and "LayerNormalization" in wrapped
    # The converter calibrates the float islands, so the export is still full-integer.
    tflite.validate_integer(tflite.convert_int8(q, _x(32, (8, 8, 1))))


def test_strict_mode_fails_naming_the_layer_and_the_fix():
    with pytest.raises(qat.QuantizationError,
                       match=r"layer 'ln' \(LayerNormalization\).*strict=True.*keep_float_names"):
        qat.quantize(_unsupported_model(), QuantizationConfig(strict=True))
    # Keeping the unsupported layers float explicitly satisfies strict mode.
    cfg = QuantizationConfig(strict=True, keep_float_names=("ln",), keep_float_types=("Conv1D",))
    _, decisions = qat.quantize_with_report(_unsupported_model(), cfg)
    assert {d.name: d.reason for d in decisions}["c1d"] == "keep_float_types"


def test_keep_float_regex_selects_layers():
    cfg = QuantizationConfig(keep_float_regex=(r"^dense",))
    _, decisions = qat.quantize_with_report(_unsupported_model(), cfg)
    assert [d.reason for d in decisions if d.cls == "Dense"] == ["keep_float_regex"]


def test_only_unsupported_layers_is_an_error():
    inp = keras.Input((4, 8))
    model = keras.Model(inp, L.LayerNormalization()(inp))
    with pytest.raises(qat.QuantizationError, match="no layer .* can be quantized"):
        qat.quantize(model)


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
    flat = qat.flatten_nested(model)
    assert not any(isinstance(layer, keras.Model) for layer in flat.layers)
    np.testing.assert_array_equal(flat.predict(x, verbose=0), model.predict(x, verbose=0))
    q, decisions = qat.quantize_with_report(model)
    assert {d.cls for d in decisions if d.decision == "quantized"} >= {"Conv2D", "Dense"}
    tflite.validate_integer(tflite.convert_int8(q, x[:32]))


def _fit(q, x, seed=0):
    y = np.random.RandomState(seed).randint(0, 4, size=len(x))
    qat.compile_for_training(q, 1e-3)
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
    q, decisions = qat.quantize_with_report(_pattern(pattern))
    assert not [d for d in decisions if d.decision == "float"], decisions
    _fit(q, x)
    runner = tflite.TFLiteClassifier(tflite.convert_int8(q, x[:128]))
    got, want = runner.predict(x[128:]), q.predict(x[128:], verbose=0)
    step = runner._out["quantization"][0]  # pylint: disable=protected-access
    err = np.abs(got - want).max()
    assert err <= step * 1.0001 + 1e-6, f"{pattern}: max error {err:.5f} > one step {step:.5f}"


def _conv_filter_scales(model_bytes):
    m = tflite.read_flatbuffer(model_bytes)
    sg = m.subgraphs[0]
    _, ops, _ = tflite.schema_names()
    for op in sg.operators:
        if ops[max(m.operatorCodes[op.opcodeIndex].builtinCode,
                   m.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)] == "CONV_2D":
            return len(sg.tensors[op.inputs[1]].quantization.scale)
    raise AssertionError("no CONV_2D")


def test_per_tensor_weights_use_one_scale_per_conv():
    x = _x(32)
    per_axis = tflite.convert_int8(qat.quantize(_pattern("conv_bn_relu")), x)
    q = qat.quantize(_pattern("conv_bn_relu"), QuantizationConfig(per_tensor=True))
    per_tensor = tflite.convert_int8(q, x, per_channel=False)
    assert _conv_filter_scales(per_axis) == 8 and _conv_filter_scales(per_tensor) == 1
    # The per-tensor QAT model and its per-tensor TFLite agree within one output step.
    runner = tflite.TFLiteClassifier(per_tensor)
    err = np.abs(runner.predict(x) - q.predict(x, verbose=0)).max()
    assert err <= runner._out["quantization"][0] * 1.0001 + 1e-6  # pylint: disable=protected-access


def test_n_bit_scheme_gives_4_bit_weights():
    x = _x()
    cfg = QuantizationConfig(scheme="n_bit", weight_bits=4, activation_bits=8)
    q, decisions = qat.quantize_with_report(_pattern("dense"), cfg)
    assert all(d.reason != "not supported by the n_bit scheme" for d in decisions)
    _fit(q, x)
    model_bytes = tflite.convert_int8(q, x[:64])
    m = tflite.read_flatbuffer(model_bytes)
    _, _, types = tflite.schema_names()
    weight_types = {types[t.type] for t in m.subgraphs[0].tensors
                    if t.buffer > 0 and m.buffers[t.buffer].data is not None and
                    types[t.type] not in ("INT32",)}
    assert weight_types == {"INT4"}, weight_types  # TFLite packs the 4-bit QAT weights
    runner = tflite.TFLiteClassifier(model_bytes)
    err = np.abs(runner.predict(x[128:]) - q.predict(x[128:], verbose=0)).max()
    assert err <= runner._out["quantization"][0] * 1.0001 + 1e-6  # pylint: disable=protected-access
