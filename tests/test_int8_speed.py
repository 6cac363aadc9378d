"""Why an int8 model can be slower than float, and what tfx-qat does about it: how XNNPACK takes
a model (interpreter.delegation), the swish policy that keeps squeeze-excite convs delegable, the
float reference traced at batch 1, interleaved latency and the summary's slower-than-float
warning. Real TFLite/TFMOT on small seeded models."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfx_qat.pipelines.summary import format_summary
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.config import DataSpec, EvalConfig, QuantizationConfig
from tfx_qat.quant_lib.evaluation import latency as evaluation_latency
from tfx_qat.quant_lib.qat import folds, plan, train
from tfx_qat.quant_lib.tflite import convert, flatbuffer, interpreter, runtime, validate

CFG = QuantizationConfig(data=DataSpec(image_shape=(8, 8, 4), num_classes=3))


def _se_model():
    """An EfficientNet-style squeeze-excite block: the reduce conv carries a swish."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 4), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="swish")(inp)
    s = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = keras.layers.Conv2D(2, 1, activation="swish", name="se_reduce")(s)
    s = keras.layers.Conv2D(8, 1, activation="sigmoid", name="se_expand")(s)
    x = keras.layers.Multiply()([x, s])
    out = keras.layers.Dense(3)(keras.layers.Flatten()(x))
    return keras.Model(inp, out)


def _int8(model, x):
    q = plan.quantize(model, CFG)
    train.calibrate_ranges(q, [x[:16], x[16:]])
    return q, convert.convert_int8(q, x)


def test_a_swish_conv_output_gets_its_own_range_and_xnnpack_takes_the_graph():
    x = np.random.default_rng(0).random((32, 8, 8, 4), dtype=np.float32)
    model = _se_model()
    q, data = _int8(model, x)
    names = [v.name for v in q.get_layer("se_reduce").non_trainable_variables]
    assert any("pre_activation_min" in n for n in names), names  # swish: before and after
    # The TFLite tensor TFMOT left without a range (the conv output before LOGISTIC * x) now has
    # the range of what the float conv produces, not a degenerate one.
    pre = keras.Model(model.input, model.get_layer("se_reduce").input)
    w, b = model.get_layer("se_reduce").get_weights()
    conv = np.einsum("nhwc,hwcd->nhwd", pre(x).numpy(), w) + b
    interp = tf.lite.Interpreter(model_content=data)
    interp.allocate_tensors()
    scales = {t["name"]: t["quantization_parameters"]["scales"] for t in interp.get_tensor_details()}
    conv_scale = [s[0] for n, s in scales.items() if "se_reduce" in n and n.endswith("Conv2D")]
    assert conv_scale and conv_scale[0] >= 0.5 * (conv.max() - conv.min()) / 255, (
        conv_scale, conv.min(), conv.max())
    d = interpreter.delegation(data)
    assert d.partitions == 1 and d.delegated + sum(d.builtin.values()) == d.ops
    assert d.delegated >= d.ops - 1, d.describe()  # at most a boundary op outside XNNPACK
    keras_scores = q(x).numpy()
    agree = np.mean(np.argmax(interpreter.TFLiteClassifier(data).predict(x), 1) ==
                    np.argmax(keras_scores, 1))
    assert agree >= 0.9


def test_float_reference_has_static_shapes_so_xnnpack_can_take_it():
    """A Keras Reshape to (1, 1, C) after pooling (EfficientNet's SE) traced with a dynamic batch
    leaves SHAPE/PACK ops whose dynamic tensors make TF 2.16's XNNPACK refuse the whole float
    graph (LiteRT's takes the rest around them); traced at batch 1, both take all of it."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 4))
    s = keras.layers.Reshape((1, 1, 4))(keras.layers.GlobalAveragePooling2D()(inp))
    out = keras.layers.Flatten()(keras.layers.Multiply()([inp, s]))
    model = keras.Model(inp, keras.layers.Dense(3)(out))
    dynamic = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    assert interpreter.delegation(dynamic, "tf").partitions == 0
    assert {"SHAPE", "PACK"} <= set(interpreter.delegation(dynamic, "litert").builtin)
    fixed = convert.convert_float(model)
    for rt in runtime.RUNTIMES:
        d = interpreter.delegation(fixed, rt)
        assert d.partitions >= 1 and not d.builtin, (rt, d.describe())
    x = np.random.default_rng(0).random((5, 8, 8, 4), dtype=np.float32)
    np.testing.assert_allclose(interpreter.TFLiteClassifier(fixed).predict(x), model(x).numpy(),
                               atol=1e-5)


def test_delegation_names_what_xnnpack_leaves_to_builtin_kernels():
    """One-hot ids (GATHER) stay in TFLite's builtin kernels, splitting the graph."""
    keras.utils.set_random_seed(0)
    ins = {"x": keras.Input((2,), name="x"), "c": keras.Input((1,), name="c", dtype="int32")}
    h = keras.layers.concatenate([keras.layers.Dense(4)(ins["x"]),
                                  keras.layers.CategoryEncoding(5)(ins["c"])])
    model = keras.Model(ins, keras.layers.Dense(1, activation="sigmoid")(h))
    x = {"x": np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32),
         "c": np.random.default_rng(1).integers(0, 5, size=(32, 1)).astype(np.int32)}
    q = plan.quantize(model, QuantizationConfig(data=DataSpec()))
    train.calibrate_ranges(q, [x])
    d = interpreter.delegation(convert.convert_int8(q, x))
    assert d.builtin.get("GATHER") == 1 and d.delegated + sum(d.builtin.values()) == d.ops
    assert "GATHER x1" in d.describe()


def test_interleaved_latency_and_the_slower_than_float_warning():
    x = np.random.default_rng(0).random((32, 8, 8, 4), dtype=np.float32)
    model = _se_model()
    _, int8 = _int8(model, x)
    lat = evaluation_latency.compare_latency(int8, convert.convert_float(model), x[:8], repeats=3)
    assert lat.int8_latency_ms > 0 and lat.float_latency_ms > 0
    assert lat.tf_int8_latency_ms > 0 and lat.tf_float_latency_ms > 0
    assert lat.int8_xnnpack.startswith("XNNPACK ") and lat.float_xnnpack
    # The gate's figures are LiteRT's, named with its installed version; TF's interpreter beside.
    from importlib import metadata
    assert lat.latency_runtime == f"LiteRT {metadata.version('ai-edge-litert')}"
    assert lat.tf_runtime == f"TF Lite (TensorFlow {metadata.version('tensorflow')})"
    _, runners = evaluation_latency.timed_ms({"int8": int8}, x[:2], 1, runtime.RUNTIMES)
    assert type(runners["int8", "litert"]._interp).__module__.startswith("ai_edge_litert")
    assert type(runners["int8", "tf"]._interp).__module__.startswith("tensorflow")
    raw = {rt: runners["int8", rt].outputs_at_batch_one(x[:8]).astype(float)
           for rt in runtime.RUNTIMES}
    assert lat.int8_runtimes_max_abs_diff == float(np.abs(raw["litert"] - raw["tf"]).max())
    assert raw["tf"].shape[0] == 8 and raw["tf"].dtype == float
    summary = {"task": "multiclass", "float_accuracy": 0.9, "int8_accuracy": 0.9, "delta_pt": 0.0,
               "eval_examples": 8, "float_tflite_bytes": len(int8) * 3,
               "int8_tflite_bytes": len(int8), "blessed": True, "blessing_reasons": [],
               "pushed_path": "/serving/1/tflite", **lat.to_properties()}
    text = format_summary(summary)
    assert f"XNNPACK        : int8 {lat.int8_xnnpack[8:]}" in text
    assert f"on {lat.latency_runtime} (1 thread" in text and f"{lat.tf_runtime}: int8" in text
    slower = lat.int8_latency_ms > lat.float_latency_ms
    assert ("SLOWER than float" in text) == slower
    flipped = dict(summary, int8_latency_ms=2 * lat.float_latency_ms)
    assert "SLOWER than float" in format_summary(flipped)
    assert "SLOWER" not in format_summary(dict(summary,
                                               int8_latency_ms=0.5 * lat.float_latency_ms))


def test_min_int8_speedup_config_checks():
    from tfx_qat.quant_lib.config import ConfigError, EvalConfig
    with pytest.raises(ConfigError, match=r"EvalConfig.min_int8_speedup: must be None .* > 0"):
        EvalConfig(min_int8_speedup=0)
    # The gate decides on the deployment runtime's figures (LiteRT), not TF's: here TF's
    # interpreter would give int8 2x the float speed, LiteRT 0.5x.
    latency = records.Evaluation(float_latency_ms=1.0, int8_latency_ms=2.0,
                                 latency_runtime="LiteRT 2.3.0", tf_float_latency_ms=1.0,
                                 tf_int8_latency_ms=0.5,
                                 int8_xnnpack="XNNPACK 1/2", float_xnnpack="XNNPACK 2/2")
    from tfx_qat.quant_lib.config import EvalConfig as C

    def gate(latency, **kw):
        return evaluation_latency.speed_gate(C(**kw), latency)

    vnni = dataclasses.replace(latency, latency_int8_dot=True, latency_cpu="X (int8 dot product)")
    assert gate(vnni) == (vnni, [])
    assert gate(vnni, min_int8_speedup=0.4)[0].speed_gate == "passed"
    lat, (reason,) = gate(vnni, min_int8_speedup=1.0)
    assert reason.startswith("int8 speed 0.50x float on LiteRT 2.3.0") and "XNNPACK 1/2" in reason
    assert lat.speed_gate == "failed" and "CPU X (int8 dot product)" in reason
    lat, (reason,) = gate(dataclasses.replace(vnni, float_latency_ms=None), min_int8_speedup=1.0)
    assert "no float TFLite reference" in reason
    # Without int8 dot products (or unknown: None gates as before) the ratio is not applied.
    zen3 = dataclasses.replace(latency, latency_int8_dot=False, latency_cpu="AMD EPYC 7B13 (no)")
    lat, failures = gate(zen3, min_int8_speedup=1.0)
    assert failures == [] and lat.speed_gate.startswith("not measurable on this CPU")
    assert "int8 0.50x float on AMD EPYC 7B13" in lat.speed_gate
    assert evaluation_latency.speed_notes(lat) == [f"EvalConfig.min_int8_speedup: {lat.speed_gate}"]
    assert gate(zen3, min_int8_speedup=1.0, speed_gate_any_cpu=True)[1]
    assert gate(dataclasses.replace(zen3, latency_int8_dot=None), min_int8_speedup=1.0)[1]
    with pytest.raises(ConfigError, match="EvalConfig.speed_gate_any_cpu: must be True"):
        C(speed_gate_any_cpu="yes")


ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx avx2 fma bmi2 sha_ni vaes vpclmulqdq
"""
SAPPHIRE = ZEN3.replace("AMD EPYC 7B13", "Intel(R) Xeon(R) Platinum 8481C").replace(
    "vaes", "avx512f avx512_vnni avx_vnni amx_int8")
GRAVITON2 = "processor\t: 0\nFeatures\t: fp asimd aes crc32 atomics asimddp lrcpc\n"


def test_cpu_reading_names_the_int8_dot_product_instructions(tmp_path, monkeypatch):
    """/proc/cpuinfo as x86 (flags) and ARM (Features) write it; TFX_QAT_INT8_DOT overrides."""
    from tfx_qat.quant_lib.tflite import cpu
    monkeypatch.delenv(cpu.FORCE_ENV, raising=False)
    got = {}
    for name, text in (("zen3", ZEN3), ("spr", SAPPHIRE), ("graviton2", GRAVITON2), ("none", "")):
        (tmp_path / name).write_text(text)
        got[name] = cpu.read(str(tmp_path / name))
    assert got["zen3"] == cpu.CpuInfo("AMD EPYC 7B13", False, ())
    assert got["zen3"].describe() == "AMD EPYC 7B13 (no int8 dot product (no VNNI / dotprod))"
    assert got["spr"].int8_dot and got["spr"].instructions == ("avx512_vnni", "avx_vnni",
                                                               "amx_int8")
    assert got["graviton2"].int8_dot and got["graviton2"].instructions == ("asimddp",)
    assert got["none"].int8_dot is None and "unknown" in got["none"].describe()
    monkeypatch.setenv(cpu.FORCE_ENV, "0")
    forced = cpu.read(str(tmp_path / "spr"))
    assert forced.int8_dot is False and forced.forced and cpu.FORCE_ENV in forced.describe()
    monkeypatch.setenv(cpu.FORCE_ENV, "yes")
    with pytest.raises(ValueError, match="TFX_QAT_INT8_DOT='yes': set it to 1"):
        cpu.read(str(tmp_path / "spr"))


def test_slow_int8_warning_gives_the_true_cause():
    """No int8 dot product first (the CPU, not the model); else ops outside XNNPACK; else more
    ops than float; the summary's WARNING line says which."""
    from tfx_qat.quant_lib.tflite import cpu
    base = {"latency_cpu": "AMD EPYC 7B13 (no int8 dot product (no VNNI / dotprod))",
            "latency_int8_dot": False, "int8_xnnpack": "XNNPACK 11/12 ops in 1 partition(s); "
            "builtin kernels: SOFTMAX x1", "float_xnnpack": "XNNPACK 10/10 ops in 1 partition(s)"}
    assert cpu.slow_cause(base).startswith("this CPU has no int8 dot-product instructions (AMD")
    vnni = dict(base, latency_int8_dot=True)
    assert cpu.slow_cause(vnni).startswith("ops left to TFLite's builtin kernels cost hand-offs "
                                           "(SOFTMAX x1;")
    more = dict(vnni, int8_xnnpack="XNNPACK 12/12 ops in 1 partition(s)")
    assert cpu.slow_cause(more) == "int8 runs 12 ops where float runs 10"
    summary = {"task": "multiclass", "float_accuracy": 0.9, "int8_accuracy": 0.9, "delta_pt": 0.0,
               "eval_examples": 8, "float_tflite_bytes": 3, "int8_tflite_bytes": 1,
               "blessed": True, "blessing_reasons": [], "pushed_path": None,
               "int8_latency_ms": 0.12, "float_latency_ms": 0.1, "latency_runtime": "LiteRT 2.3.0",
               **base}
    text = format_summary(summary)
    assert "SLOWER than float on this CPU: this CPU has no int8 dot-product" in text
    assert "CPU: AMD EPYC 7B13 (no int8 dot product" in text


def _slow_in_int8_model():
    """MobileNetV3's hard-swish (x * relu6(x + 3) / 6) eight times over and a softmax: float
    runs one fused HARD_SWISH per layer, int8 an ADD and two MULs, and int8 SOFTMAX stays out of
    XNNPACK. 32x32x16, so one
    invoke takes ~20 us: at 16x16x8 (~4 us) timer noise moved the ratio from 1.4 to 1.8."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 16), name="image")
    x = inp
    for _ in range(8):
        x = keras.layers.Multiply()([x, keras.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])
        x = keras.layers.Add()([x, inp])
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


def test_op_profile_and_the_warnings_on_a_model_built_to_be_slow_in_int8():
    from tfx_qat.quant_lib.reports import report
    from tfx_qat.quant_lib.tflite import op_profile
    x = np.random.default_rng(0).random((32, 32, 32, 16), dtype=np.float32)
    model = _slow_in_int8_model()
    q = plan.quantize(model, QuantizationConfig(data=DataSpec(image_shape=(32, 32, 16),
                                                             num_classes=3)))
    train.calibrate_ranges(q, [x[:16], x[16:]])
    int8, fl = convert.convert_int8(q, x), convert.convert_float(model)
    lat = evaluation_latency.compare_latency(int8, fl, x[:8], repeats=10)
    # LiteRT 1.70-1.80x here over 24 measurements, two processes at once; TF's interpreter ~4.8x.
    assert lat.int8_latency_ms > 1.25 * lat.float_latency_ms, lat
    assert lat.tf_int8_latency_ms > 2 * lat.tf_float_latency_ms, lat

    prof = evaluation_latency.op_profiles(int8, fl)
    d = interpreter.delegation(int8)
    rows = {r["op"]: r for r in prof["int8"]["by_op"]}
    assert sum(r["count"] for r in rows.values()) == d.ops
    assert rows["SOFTMAX"]["xnnpack"] is False and rows["MUL"]["xnnpack"] is True
    assert rows["MUL"]["count"] == 16 and all(r["us"] > 0 for r in rows.values())
    assert "HARD_SWISH" in {r["op"] for r in prof["float"]["by_op"]} and "HARD_SWISH" not in rows
    assert prof["int8"]["whole_us"] > 0 and prof["int8"]["ops_sum_us"] > 0
    one = op_profile.profile(int8, passes=1, reps=1, max_ops=3)
    assert [o.index for o in one.ops] == [0, 1, 2]

    from tfx_qat.quant_lib.artifacts.report_files import Metrics
    metrics = Metrics(op_profile=prof, **lat.to_properties())  # as metrics.json holds it
    page = report._op_profile(metrics.op_profile)  # pylint: disable=protected-access
    assert 'id="op-profile"' in page and "<td class=\"l\">MUL</td><td class=\"\">16</td>" in page
    assert "no int8 kernel for SOFTMAX" in page and "no int8 op of their type: HARD_SWISH" in page
    assert {r["op"]: r["loses"] for r in op_profile.compare(prof["int8"], prof["float"])}[
        "SOFTMAX"] == "builtin"
    summary = {"task": "multiclass", "float_accuracy": 0.9, "int8_accuracy": 0.9, "delta_pt": 0.0,
               "eval_examples": 8, "float_tflite_bytes": len(fl), "int8_tflite_bytes": len(int8),
               "blessed": True, "blessing_reasons": [], "pushed_path": "/serving/1/tflite",
               **lat.to_properties()}
    assert "SLOWER than float" in format_summary(summary)
    _, (reason,) = evaluation_latency.speed_gate(EvalConfig(min_int8_speedup=1.0, speed_gate_any_cpu=True),
                                         lat)
    assert "below EvalConfig.min_int8_speedup=1" in reason and "SOFTMAX x1" in reason


def _hard_swish_block():
    """MobileNetV3's pattern: hard-swish before a padded depthwise conv, a hard-sigmoid gate,
    and one hard-swish whose output reaches an Add (not foldable)."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((8, 8, 4), name="image")
    x = L.BatchNormalization()(L.Conv2D(8, 1, use_bias=False)(inp))
    x = L.Multiply(name="hs1")([x, L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])
    x = L.DepthwiseConv2D(3, strides=2, name="dw")(L.ZeroPadding2D(((0, 1), (0, 1)))(x))
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.ReLU(6.0)(L.Conv2D(8, 1)(L.ReLU()(L.Conv2D(4, 1)(s))) + 3.0) * (1.0 / 6.0)
    x = L.Conv2D(8, 1, name="project")(L.Multiply(name="gate")([x, s]))
    y = L.Multiply(name="hs2")([x, L.ReLU(6.0)(x + 3.0) / 6.0])
    y = L.Add()([y, x])
    return keras.Model(inp, L.Dense(3, name="head")(L.Flatten()(y)))


def test_constant_multiplies_fold_into_the_next_kernels_and_leave_int8_muls_out():
    from tfx_qat.quant_lib.qat import layer_configs, scale_fold
    model = _hard_swish_block()
    x = np.random.default_rng(0).normal(0, 2, (64, 8, 8, 4)).astype(np.float32)
    model.layers[2].set_weights([w + 0.5 for w in model.layers[2].get_weights()])  # BN: vary
    rewritten = folds.rewrite_layers(model)
    folded, dropped = scale_fold.fold_constant_multiplies(rewritten)
    assert len(dropped) == 2  # hs1's and the gate's 1/6; hs2 reaches an Add and keeps its own
    kept = [l for l in folded.layers if isinstance(l, layer_configs.ScalarOp)
            and l.op in ("multiply", "truediv")]
    assert len(kept) == 1 and kept[0].op == "truediv"
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-4 * np.abs(model.predict(x, verbose=0)).max())
    w = {l.name: l.get_weights()[0] for l in folded.layers if l.weights}
    np.testing.assert_allclose(w["dw"], model.get_layer("dw").get_weights()[0] / 6, rtol=1e-6)
    np.testing.assert_allclose(w["project"], model.get_layer("project").get_weights()[0] / 6,
                               rtol=1e-6)
    np.testing.assert_allclose(model.get_layer("dw").get_weights()[0] * 1,
                               rewritten.get_layer("dw").get_weights()[0])  # user's model as was

    same, none = scale_fold.fold_constant_multiplies(rewritten, protected={"hs1", "gate"})
    assert none == [] and same is rewritten

    cfg = QuantizationConfig(data=DataSpec(image_shape=(8, 8, 4), num_classes=3))
    ops, err = {}, {}
    for name, m in (("folded", model), ("unfolded", None)):
        if m is None:  # hs1 and gate left to post-training quantization: no fold there
            cfg = QuantizationConfig(data=cfg.data, keep_float_regex=("^hs1$", "^gate$"))
            m = model
        q = plan.quantize(m, cfg)
        train.calibrate_ranges(q, [x[:32], x[32:]])
        int8 = convert.convert_int8(q, x)
        ops[name] = validate.validate_integer(int8).op_counts
        err[name] = np.abs(interpreter.TFLiteClassifier(int8).predict(x) - q.predict(x, verbose=0))
    assert ops["unfolded"]["MUL"] - ops["folded"]["MUL"] == 2
    # int8 vs its QAT model (calibrated, untrained): the fold costs no parity
    assert err["folded"].mean() <= 1.25 * err["unfolded"].mean(), err


def test_a_factor_reaching_a_bias_free_conv_goes_into_its_batchnorm():
    """The kernel QAT fine-tunes keeps its scale; the BatchNormalization after it takes the
    factor in its statistics and epsilon (inference and batch statistics alike)."""
    from tfx_qat.quant_lib.qat import scale_fold
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((8, 8, 4), name="image")
    x = L.Conv2D(8, 1)(inp)
    x = L.Multiply(name="hs")([x, L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = L.BatchNormalization(name="bn")(x)
    model = keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(L.ReLU()(x))))
    model.get_layer("bn").set_weights([np.full(8, 1.5, np.float32), np.full(8, .2, np.float32),
                                       np.linspace(-1, 1, 8).astype(np.float32),
                                       np.linspace(.5, 2, 8).astype(np.float32)])
    folded, dropped = scale_fold.fold_constant_multiplies(folds.rewrite_layers(model))
    assert len(dropped) == 1
    np.testing.assert_array_equal(folded.get_layer("dw").get_weights()[0],
                                  model.get_layer("dw").get_weights()[0])
    bn = folded.get_layer("bn")
    assert bn.epsilon == pytest.approx(36 * model.get_layer("bn").epsilon)
    x = np.random.default_rng(0).normal(0, 2, (16, 8, 8, 4)).astype(np.float32)
    for training in (False, True):
        np.testing.assert_allclose(folded(x, training=training).numpy(),
                                   model(x, training=training).numpy(), rtol=1e-4, atol=1e-5)


def test_stride_two_padding_and_the_gates_plus_three_fold_into_the_convs():
    """The explicit padding before the stride-2 depthwise conv becomes its own "same" padding,
    the gate's +3 the squeeze-excite conv's bias: the int8 model has no PAD and one ADD fewer,
    and the model computes what it did."""
    from tfx_qat.quant_lib.qat import scale_fold
    model = _hard_swish_block()
    x = np.random.default_rng(0).normal(0, 2, (32, 8, 8, 4)).astype(np.float32)
    rewritten = folds.rewrite_layers(model)
    padded, pads = scale_fold.fold_zero_padding(rewritten)
    folded, adds = scale_fold.fold_constant_adds(padded)
    assert len(pads) == 1 and padded.get_layer("dw").padding == "same"
    assert len(adds) == 1  # hs1's and hs2's +3 read a tensor their Multiply reads too
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(folded.predict(x, verbose=0), want, rtol=1e-4,
                               atol=1e-5 * np.abs(want).max())
    q = plan.quantize(model, QuantizationConfig(data=DataSpec(image_shape=(8, 8, 4),
                                                             num_classes=3)))
    train.calibrate_ranges(q, [x[:16], x[16:]])
    ops = validate.validate_integer(convert.convert_int8(q, x)).op_counts
    assert "PAD" not in ops and ops["ADD"] == 3, ops  # hs1, hs2 and the residual Add

    keras.utils.set_random_seed(0)  # padding "same" would not add, an even/odd mismatch: kept
    inp = keras.Input((8, 8, 4))
    y = keras.layers.DepthwiseConv2D(3, strides=2)(keras.layers.ZeroPadding2D(1)(inp))
    other = keras.Model(inp, keras.layers.Flatten()(y))
    assert scale_fold.fold_zero_padding(other) == (other, [])


def test_the_comparison_says_why_int8_loses_op_type_by_op_type():
    """Profiles as op_profile writes them: the verdict per op type and the report's runtime
    limit naming the int8 kernel that is slower than float's with the same op count."""
    from tfx_qat.quant_lib.reports import report
    from tfx_qat.quant_lib.tflite import op_profile
    row = lambda op, n, us, x=True: {"op": op, "count": n, "us": us, "xnnpack": x}  # noqa: E731
    int8 = {"whole_us": 90.0, "ops_sum_us": 99.0, "by_op": [
        row("DEPTHWISE_CONV_2D", 11, 58.0), row("CONV_2D", 43, 20.0), row("MUL", 29, 15.0),
        row("SOFTMAX", 1, 0.3, False)]}
    flt = {"whole_us": 99.0, "ops_sum_us": 120.0, "by_op": [
        row("DEPTHWISE_CONV_2D", 11, 40.0), row("CONV_2D", 43, 60.0), row("MUL", 19, 10.0),
        row("HARD_SWISH", 19, 9.0), row("SOFTMAX", 1, 0.2)]}
    rows = {r["op"]: r for r in op_profile.compare(int8, flt)}
    assert {k: r["loses"] for k, r in rows.items()} == {
        "DEPTHWISE_CONV_2D": "slower kernel", "CONV_2D": "", "MUL": "more ops",
        "SOFTMAX": "builtin", "HARD_SWISH": ""}
    assert [r["op"] for r in op_profile.compare(int8, flt)][0] == "DEPTHWISE_CONV_2D"
    from tfx_qat.quant_lib.artifacts.report_files import OpProfiles
    page = report._op_profile(OpProfiles(int8=int8, float=flt))  # pylint: disable=protected-access
    assert "slower than its float kernel on this CPU for DEPTHWISE_CONV_2D (11 ops: int8 58 us, "\
        "float 40 us)" in page


def test_a_depthwise_conv_and_its_batchnorm_stay_float_together():
    """TFMOT refuses a quantized BatchNormalization after a float conv, so both are listed; the
    converter fuses the BN into the conv's float op, which counts for both names."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((8, 8, 4))
    x = L.Conv2D(8, 1, activation="relu")(inp)
    x = L.BatchNormalization(name="bn")(L.DepthwiseConv2D(3, padding="same", use_bias=False,
                                                          name="dw")(x))
    model = keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(L.Conv2D(8, 1)(x))))
    x = np.random.default_rng(0).random((16, 8, 8, 4), dtype=np.float32)
    cfg = QuantizationConfig(data=DataSpec(image_shape=(8, 8, 4), num_classes=3),
                             float_fallback_names=("dw", "bn"))
    q = plan.quantize(model, cfg)
    train.calibrate_ranges(q, [x[:8], x[8:]])
    data = convert.convert_int8(q, x, float_layers=("dw", "bn"))
    ops = validate.validate_integer(data, float_layers=("dw", "bn")).op_counts
    assert ops["DEQUANTIZE"] == 1 and ops["QUANTIZE"] == 1 and ops["DEPTHWISE_CONV_2D"] == 1, ops
    with pytest.raises(flatbuffer.ExportValidationError, match="produce no op"):
        convert.convert_int8(q, x, float_layers=("dw", "bn", "no_such_layer"))
