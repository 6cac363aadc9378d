"""`make bench`: the numbers users decide by, measured in one run on one machine.

Fashion-MNIST, the pipeline's CNN. Fair protocol: the float model F0 (``--float-epochs`` at
lr 1e-3) is the starting point of everything; the float *reference* F1 gets the same extra
fine-tuning QAT gets (``--qat-epochs`` at ``--qat-lr``, no fake quantization), so QAT's
low-learning-rate epoch cannot pass for a quantization gain. Compared on the 10k test set:
float TFLite (F1), PTQ int8 (F1 + the same representative data), QAT int8 (F0 + QAT), and at 4-bit
weights (TFMOT's experimental n-bit scheme): PTQ-4 (F1, scheme applied, ranges calibrated on the
representative data with learning rate 0) vs QAT-4 (F0 + QAT at 4 bits); and with one weight
scale per tensor: PTQ (F1) vs QAT (F0 + QAT), tfx-qat's and TFMOT's as is. Plus: a
MobileNetV2-shaped model's size and latency, QAT vs float step time, the pipeline's wall time vs a bare script doing
the same ML work, evaluator throughput vs a raw interpreter loop, and the accuracy-aware search
at low weight widths (trials selected on a validation split, scored on the test set too).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from typing import Any, Dict

import numpy as np

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from benchmarks import bench_experiments
from tfx_qat.pipelines.data import load_fashion_mnist
from tfx_qat.pipelines.modules.cnn_trainer import build_model
from tfx_qat.quant_lib.config import DataSpec, QuantizationConfig
from tfx_qat.quant_lib.evaluation import latency
from tfx_qat.quant_lib.qat import plan, train as qat_train
from tfx_qat.quant_lib.tflite import convert, interpreter, op_profile, runtime, validate

log = logging.getLogger("bench")
SPEC = DataSpec(image_shape=(28, 28, 1), num_classes=10)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_name() -> str:
    """The CPU a section ran on, with its int8 dot-product instructions (``tfx_qat.quant_lib.tflite.cpu``):
    int8 speed-ups hold only for CPUs that have them."""
    from tfx_qat.quant_lib.tflite import cpu
    c = cpu.read()
    dot = ("int8 dot product: " + ", ".join(c.instructions) if c.int8_dot else
           "int8 dot product unknown" if c.int8_dot is None else "no int8 dot product (no VNNI)")
    return f"{c.model}, {os.cpu_count()} cores, {dot}"


def _fit(model, x, y, epochs, lr, batch, tag, seed=0):
    qat_train.compile_for_training(model, lr)
    timer = qat_train.StepTimer(tag)
    keras.utils.set_random_seed(seed)
    model.fit(x, y, batch_size=batch, epochs=epochs, callbacks=[timer], verbose=0, shuffle=True)
    return timer.seconds_per_step


def _tfx_qat(model, cfg, x):
    """QAT as QuantizeTrainer starts it: TFMOT's wrappers (with tfx-qat's plan), then activation
    ranges calibrated on 4 training batches of 64 (qat_train.calibrate_ranges)."""
    q = plan.quantize(model, cfg)
    qat_train.calibrate_ranges(q, [x[i:i + 64] for i in range(0, 256, 64)])
    return q


def _tfx_qat_with_report(model, cfg, x):
    q, decisions = plan.quantize_with_report(model, cfg)
    qat_train.calibrate_ranges(q, [x[i:i + 64] for i in range(0, 256, 64)])
    return q, decisions


def _clone(model):
    c = keras.models.clone_model(model)
    c.set_weights(model.get_weights())
    return c


def _measure_all(tag, models, x, y, lat_x, passes: int = 5) -> Dict[str, Dict[str, Any]]:
    """Top-1 and size of each model, and its latency on both runtimes: each of ``passes``
    interleaved passes runs every model on LiteRT and on TF's interpreter in turn
    (``latency.timed_ms``), so both columns see the same machine state; speed is the float
    model's time over the model's on the same runtime."""
    ms, _ = latency.timed_ms(models, lat_x, passes, runtime.RUNTIMES)
    lt, tf_ = runtime.DEPLOYMENT, runtime.SECOND
    out: Dict[str, Dict[str, Any]] = {}
    for k, b in models.items():
        scores = interpreter.TFLiteClassifier(b).predict(x, batch_size=256)
        out[k] = {"accuracy": float(np.mean(np.argmax(scores, -1) == y)), "bytes": len(b),
                  "latency_ms": ms[k, lt], "tf_latency_ms": ms[k, tf_]}
        log.info("%-10s acc %.4f  %8d bytes  %.4f ms (%s)  %.4f ms (%s)", f"{tag} {k}",
                 out[k]["accuracy"], len(b), ms[k, lt], lt, ms[k, tf_], tf_)
    ref = out.get("float")
    for m in out.values() if ref else ():
        m.update(delta_pt_vs_float=100 * (ref["accuracy"] - m["accuracy"]),
                 size_ratio=ref["bytes"] / m["bytes"],
                 speed_vs_float=ref["latency_ms"] / m["latency_ms"],
                 tf_speed_vs_float=ref["tf_latency_ms"] / m["tf_latency_ms"])
    return out


def _measure(name, model_bytes, x, y, lat_x) -> Dict[str, Any]:
    """One model's top-1, size and latency on both runtimes (``_measure_all``)."""
    return _measure_all(name, {"model": model_bytes}, x, y, lat_x)["model"]


def _runtimes() -> Dict[str, str]:
    """The two runtimes a section's latency columns name (LiteRT first: the speed gate's)."""
    return {"runtime": runtime.name(runtime.DEPLOYMENT), "tf_runtime": runtime.name(runtime.SECOND)}


def _fashion(args):
    xt, yt, xe, ye = load_fashion_mnist()
    if args.limit:  # smoke runs only; reported numbers use the full data
        xt, yt, xe, ye = xt[:args.limit], yt[:args.limit], xe[:args.limit // 6], ye[:args.limit // 6]
    return (xt.astype(np.float32) / 255.0)[..., None], yt, (xe.astype(np.float32) / 255.0)[..., None], ye


def fashion_mnist(args) -> Dict[str, Any]:
    xt, yt, xe, ye = _fashion(args)
    rng = np.random.default_rng(0)
    rep = xt[rng.choice(len(xt), args.representative, replace=False)]
    lat_x = xe[:args.latency_examples]
    out: Dict[str, Any] = {}

    keras.utils.set_random_seed(0)
    f0 = build_model(SPEC, width=32)
    log.info("float F0: %d epochs at lr 1e-3", args.float_epochs)
    float_step = _fit(f0, xt, yt, args.float_epochs, 1e-3, 64, "float")

    qat8 = _tfx_qat(_clone(f0), QuantizationConfig(data=SPEC), xt)
    qat8_step = _fit(qat8, xt, yt, args.qat_epochs, args.qat_lr, 64, "QAT8")
    qat8_bytes = convert.convert_int8(qat8, rep)

    f1 = _clone(f0)
    log.info("float reference F1: F0 + %d epoch(s) at lr %g, no fake quantization",
             args.qat_epochs, args.qat_lr)
    f1_step = _fit(f1, xt, yt, args.qat_epochs, args.qat_lr, 64, "float-ft")
    float_bytes = convert.convert_float(f1)
    ptq8_bytes = convert.convert_int8(f1, rep)

    # 4-bit weights, 8-bit activations (TFMOT experimental n-bit scheme).
    cfg4 = QuantizationConfig(data=SPEC, scheme="n_bit", weight_bits=4, activation_bits=8)
    qat4 = _tfx_qat(_clone(f0), cfg4, xt)
    _fit(qat4, xt, yt, args.qat_epochs, args.qat_lr, 64, "QAT4")
    ptq4 = plan.quantize(_clone(f1), cfg4)
    qat_train.compile_for_training(ptq4, 0.0)  # lr 0: forward passes only set the quantizer ranges
    ptq4.optimizer.learning_rate = 0.0
    ptq4.fit(rep, rng.integers(0, 10, len(rep)), batch_size=32, epochs=1, verbose=0)
    qat4_bytes, ptq4_bytes = convert.convert_int8(qat4, rep), convert.convert_int8(ptq4, rep)

    # Longer fine-tuning at 4 bits (QAT needs more than one epoch to recover there), with its own
    # fair float reference F_n (F0 + the same n epochs, no fake quantization).
    n = args.long_epochs
    fn = _clone(f0)
    _fit(fn, xt, yt, n, args.qat_lr, 64, f"float-ft{n}")
    qat4n = _tfx_qat(_clone(f0), cfg4, xt)
    _fit(qat4n, xt, yt, n, args.qat_lr, 64, f"QAT4x{n}")
    ptq4n = plan.quantize(_clone(fn), cfg4)
    qat_train.compile_for_training(ptq4n, 0.0)
    ptq4n.fit(rep, rng.integers(0, 10, len(rep)), batch_size=32, epochs=1, verbose=0)
    long = {"float": convert.convert_float(fn), "ptq_w4a8": convert.convert_int8(ptq4n, rep),
            "qat_w4a8": convert.convert_int8(qat4n, rep)}
    out["w4a8_long"] = {"epochs": n, "models": _measure_all(f"{n}ep", long, xe, ye, lat_x[:50])}

    # One weight scale per tensor: PTQ (F1) vs QAT (F0 + the same epochs) as tfx-qat configures
    # it (BN folded into the kernels first), and TFMOT's per-tensor QAT as is, for the record.
    qat_pt = _tfx_qat(_clone(f0), QuantizationConfig(data=SPEC, per_tensor=True), xt)
    _fit(qat_pt, xt, yt, args.qat_epochs, args.qat_lr, 64, "QAT8-per-tensor")
    qk = tfmot.quantization.keras
    with qk.quantize_scope():
        tfmot_pt = qk.quantize_apply(qk.quantize_annotate_model(_clone(f0)),
                                     qk.default_8bit.Default8BitQuantizeScheme(disable_per_axis=True))
    _fit(tfmot_pt, xt, yt, args.qat_epochs, args.qat_lr, 64, "TFMOT-QAT8-per-tensor")
    out["per_tensor_keras_accuracy"] = {
        k: float(np.mean(np.argmax(m.predict(xe, batch_size=256, verbose=0), -1) == ye))
        for k, m in (("qat_int8_pt", qat_pt), ("tfmot_qat_int8_pt", tfmot_pt))}

    models = {"float": float_bytes, "ptq_int8": ptq8_bytes, "qat_int8": qat8_bytes,
              "ptq_w4a8": ptq4_bytes, "qat_w4a8": qat4_bytes,
              "ptq_int8_pt": convert.convert_int8(f1, rep, per_channel=False),
              "qat_int8_pt": convert.convert_int8(qat_pt, rep, per_channel=False),
              "tfmot_qat_int8_pt": convert.convert_int8(tfmot_pt, rep, per_channel=False)}
    out["models"] = _measure_all("fashion", models, xe, ye, lat_x)
    out.update(_runtimes())
    out["training"] = {"float_seconds_per_step": float_step, "float_ft_seconds_per_step": f1_step,
                       "qat_seconds_per_step": qat8_step, "batch_size": 64,
                       "qat_over_float": qat8_step / float_step}
    return out


def bare_tfmot_4bit(args) -> Dict[str, Any]:
    """Issue 16's bare-TFMOT 4-bit protocol, and tfx-qat's QAT under exactly that protocol: F0 =
    the CNN trained ``--bare4-float-epochs`` at lr 1e-3, batch 128; QAT-4 (TFMOT's n-bit scheme,
    4-bit weights / 8-bit activations) and the fair float reference then one epoch at 1e-4;
    PTQ-4 = the scheme on the fair float with ranges set from 5,120 training examples at
    learning rate 0 (and, to compare with the main table's PTQ-4, from its 200 representative
    examples). The two QAT-4 rows differ only in what tfx-qat adds: its layer plan and QAT
    starting from activation ranges calibrated on 4 batches instead of TFMOT's initial ones.
    Repeated for ``--bare4-seeds`` seeds (a one-epoch 4-bit comparison moves by tenths of a
    point between seeds)."""
    from tensorflow_model_optimization.python.core.quantization.keras.experimental.default_n_bit import default_n_bit_quantize_scheme as nbit  # noqa: E501  pylint: disable=line-too-long
    xt, yt, xe, ye = _fashion(args)
    rep = xt[np.random.default_rng(0).choice(len(xt), args.representative, replace=False)]
    qk, batch = tfmot.quantization.keras, 128

    def tfmot_4bit(m):
        with qk.quantize_scope():
            return qk.quantize_apply(qk.quantize_annotate_model(m), nbit.DefaultNBitQuantizeScheme(
                num_bits_weight=4, num_bits_activation=8))

    def ptq(fair, x, y):
        m = tfmot_4bit(_clone(fair))
        qat_train.compile_for_training(m, 0.0)
        m.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        return m

    per_seed = []
    for seed in range(args.bare4_seeds):
        keras.utils.set_random_seed(seed)
        f0 = build_model(SPEC, width=32)
        _fit(f0, xt, yt, args.bare4_float_epochs, 1e-3, batch, f"bare4 s{seed} float", seed)
        fair = _clone(f0)
        _fit(fair, xt, yt, 1, args.qat_lr, batch, f"bare4 s{seed} float-ft", seed)
        bare_qat = tfmot_4bit(_clone(f0))
        _fit(bare_qat, xt, yt, 1, args.qat_lr, batch, f"bare4 s{seed} TFMOT QAT4", seed)
        ours = _tfx_qat(_clone(f0), QuantizationConfig(data=SPEC, scheme="n_bit", weight_bits=4,
                                                       activation_bits=8), xt)
        _fit(ours, xt, yt, 1, args.qat_lr, batch, f"bare4 s{seed} tfx-qat QAT4", seed)
        models = {"float": convert.convert_float(fair),
                  "tfmot_ptq_w4a8": convert.convert_int8(ptq(fair, xt[:5120], yt[:5120]), rep),
                  "tfmot_ptq_w4a8_rep200": convert.convert_int8(
                      ptq(fair, rep, np.zeros(len(rep), np.int64)), rep),
                  "tfmot_qat_w4a8": convert.convert_int8(bare_qat, rep),
                  "tfx_qat_w4a8": convert.convert_int8(ours, rep)}
        per_seed.append({k: _measure(f"bare4 s{seed} {k}", v, xe, ye, xe[:20])
                         for k, v in models.items()})
    out = {"float_epochs": args.bare4_float_epochs, "batch_size": batch,
           "seeds": args.bare4_seeds, "per_seed": per_seed, "models": {}}
    for k in per_seed[0]:
        acc = [s[k]["accuracy"] for s in per_seed]
        out["models"][k] = {"accuracy": float(np.mean(acc)), "min": min(acc), "max": max(acc),
                            "bytes": per_seed[0][k]["bytes"],
                            "delta_pt_vs_float": float(np.mean(
                                [100 * (s["float"]["accuracy"] - s[k]["accuracy"])
                                 for s in per_seed]))}
    out["qat_minus_ptq_pt"] = [100 * (s["tfmot_qat_w4a8"]["accuracy"] -
                                      s["tfmot_ptq_w4a8"]["accuracy"]) for s in per_seed]
    return out


def _hard_sigmoid(x):  # as tf_keras.applications.MobileNetV3 builds it
    return keras.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)


def _hard_swish(x):
    return keras.layers.Multiply()([x, _hard_sigmoid(x)])


def mobilenet_v3_style_model(width: int = 16) -> keras.Model:
    """A small MobileNetV3-style network for 32x32x1 inputs in 0..255: Rescaling, hard-swish,
    inverted residuals with squeeze-excite (the layers TFMOT's registry leaves float)."""
    L = keras.layers
    inp = keras.Input((32, 32, 1), name="image")
    x = L.Rescaling(1 / 255.0)(inp)
    bn = lambda: L.BatchNormalization(momentum=0.9)  # noqa: E731  (as the pipeline's CNN)
    x = _hard_swish(bn()(L.Conv2D(width, 3, strides=2, padding="same", use_bias=False)(x)))
    for expand, out, stride in ((2 * width, width, 1), (4 * width, 2 * width, 2),
                                (6 * width, 2 * width, 1), (6 * width, 4 * width, 2)):
        y = _hard_swish(bn()(L.Conv2D(expand, 1, use_bias=False)(x)))
        y = _hard_swish(bn()(L.DepthwiseConv2D(
            3, strides=stride, padding="same", use_bias=False)(y)))
        s = L.GlobalAveragePooling2D(keepdims=True)(y)
        s = _hard_sigmoid(L.Conv2D(expand, 1)(L.ReLU()(L.Conv2D(expand // 4, 1)(s))))
        y = bn()(L.Conv2D(out, 1, use_bias=False)(L.Multiply()([y, s])))
        x = L.Add()([x, y]) if stride == 1 and x.shape[-1] == out else y
    x = L.Dense(10)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, L.Softmax()(x), name="mobilenet_v3_style")


def mobilenet_v3_style(args) -> Dict[str, Any]:
    """The fair protocol on the MobileNetV3-style network (Fashion-MNIST padded to 32x32; F0 is
    ``--v3-float-epochs`` at lr 1e-3):
    float F1, PTQ int8, QAT int8 with tfx-qat's layer configs, and QAT int8 with those layers
    left float as TFMOT leaves them (the converter then quantizes them post-training)."""
    xt, yt, xe, ye = load_fashion_mnist()
    if args.limit:
        xt, yt, xe, ye = xt[:args.limit], yt[:args.limit], xe[:args.limit // 6], ye[:args.limit // 6]
    pad = ((0, 0), (2, 2), (2, 2))
    xt = np.pad(xt, pad).astype(np.float32)[..., None]
    xe = np.pad(xe, pad).astype(np.float32)[..., None]
    rep = xt[np.random.default_rng(0).choice(len(xt), args.representative, replace=False)]
    keras.utils.set_random_seed(0)
    f0 = mobilenet_v3_style_model()
    _fit(f0, xt, yt, args.v3_float_epochs, 1e-3, 64, "mnv3 float")
    f1 = _clone(f0)
    _fit(f1, xt, yt, args.qat_epochs, args.qat_lr, 64, "mnv3 float-ft")
    cfg = QuantizationConfig(data=DataSpec(image_shape=(32, 32, 1), num_classes=10))
    q, decisions = _tfx_qat_with_report(_clone(f0), cfg, xt)
    _fit(q, xt, yt, args.qat_epochs, args.qat_lr, 64, "mnv3 QAT")
    left = [d.cls for d in decisions if d.reason.startswith("tfx-qat config")]
    q_left, d_left = _tfx_qat_with_report(_clone(f0), dataclasses.replace(
        cfg, keep_float_types=tuple(sorted(set(left)))), xt)
    _fit(q_left, xt, yt, args.qat_epochs, args.qat_lr, 64, "mnv3 QAT, left float")
    lat_x = xe[:args.latency_examples]
    models = {"float": convert.convert_float(f1), "ptq_int8": convert.convert_int8(f1, rep),
              "qat_int8": convert.convert_int8(q, rep),
              "qat_int8_left_float": convert.convert_int8(q_left, rep)}
    return {"models": _measure_all("mnv3", models, xe, ye, lat_x),
            "params": int(sum(np.prod(w.shape) for w in f0.weights)),
            "tfx_qat_configs": {c: left.count(c) for c in sorted(set(left))},
            "float_layers_left": sum(d.decision == plan.FLOAT for d in d_left), **_runtimes()}


def search_low_bit(args) -> Dict[str, Any]:
    """Accuracy-aware search at low weight widths (``--search-weight-bits``): the float model F0
    is trained on the first 55k training images; the search selects on the last 5k (validation)
    and every trial is also scored on the 10k test images (the gate's split), which the search
    never sees. Move: 8-bit weights for the most sensitive layers (mixed precision)."""
    import tensorflow as tf
    from tfx_qat.quant_lib.config import SearchConfig
    from tfx_qat.quant_lib.search import search, sensitivity
    xt, yt, xe, ye = _fashion(args)
    nval = len(xt) // 12
    xtr, ytr, xv, yv = xt[:-nval], yt[:-nval], xt[-nval:], yt[-nval:]
    rep = xtr[np.random.default_rng(0).choice(len(xtr), args.representative, replace=False)]
    keras.utils.set_random_seed(0)
    f0 = build_model(SPEC, width=32)
    _fit(f0, xtr, ytr, args.float_epochs, 1e-3, 64, "float-search")
    lat_x = xe[:args.latency_examples // 4]
    out: Dict[str, Any] = {"float": _measure("float", convert.convert_float(f0), xe, ye, lat_x),
                           "train": len(xtr), "validation": nval, "test": len(xe), "cases": []}
    fa = out["float"]["accuracy"]

    def train(c):
        ds = lambda: tf.data.Dataset.from_tensor_slices((xtr, ytr)).shuffle(  # noqa: E731
            len(xtr), seed=c.seed).batch(c.batch_size)
        return qat_train.run_qat(lambda: sensitivity.fresh_copy(f0), ds, c)

    base = QuantizationConfig(data=SPEC, epochs=args.qat_epochs, learning_rate=args.qat_lr)
    out["all_8bit"] = _measure("all-8bit", convert.convert_int8(train(base)[0], rep), xe, ye, lat_x)
    out["all_8bit"]["drop_pt"] = 100 * (fa - out["all_8bit"]["accuracy"])
    for bits in args.search_weight_bits:
        test = {}

        def observe(trial, data):
            test[trial.index] = _measure(f"w{bits} trial{trial.index}", data, xe, ye, lat_x)

        cfg = dataclasses.replace(base, scheme="n_bit", weight_bits=bits, search=SearchConfig(
            validation_examples=nval, max_accuracy_drop_pt=args.search_budget_pt,
            moves=("int8_weights",), max_trials=args.search_trials))
        t = time.perf_counter()
        *_, result = search.run(f0, cfg, train, search.SearchData(
            {SPEC.image_key: xv}, yv, xv, rep, [xtr[i:i + 64] for i in range(0, 256, 64)]),
            observe=observe)
        case = {"weight_bits": bits, "seconds": time.perf_counter() - t, **result.report()}
        for tr in case["trials"]:
            tr["test"] = dict(test[tr["index"]], drop_pt=100 * (fa - test[tr["index"]]["accuracy"]))
        out["cases"].append(case)
    out["digits_warned"] = _digits_warned_case(args)
    return out


def _digits_warned_case(args) -> Dict[str, Any]:
    """The case the search must warn about: digits (sklearn) with 3-bit weights and a 1 pt budget
    on the CLI's built-in carve-out (1/12 of the training images, ~120): one example is ~0.8 pt."""
    import tensorflow as tf
    from tfx_qat.pipelines.data import builtin_spec, load_digits
    from tfx_qat.quant_lib.config import SearchConfig
    from tfx_qat.quant_lib.search import search, sensitivity
    spec = builtin_spec("digits")
    xt, yt, xe, ye = load_digits()
    xt, xe = xt.reshape(-1, 8, 8, 1), xe.reshape(-1, 8, 8, 1)
    nval = len(xt) // 12
    xtr, ytr, xv, yv = xt[:-nval], yt[:-nval], xt[-nval:], yt[-nval:]
    keras.utils.set_random_seed(0)
    f0 = build_model(spec, width=16)
    _fit(f0, xtr, ytr, 15, 3e-3, 64, "float-digits")
    fa = float(np.mean(np.argmax(f0.predict(xe, verbose=0), -1) == ye))
    test = {}

    def train(c):
        ds = lambda: tf.data.Dataset.from_tensor_slices((xtr, ytr)).shuffle(  # noqa: E731
            len(xtr), seed=c.seed).batch(c.batch_size)
        return qat_train.run_qat(lambda: sensitivity.fresh_copy(f0), ds, c)

    def observe(trial, data):
        acc = float(np.mean(np.argmax(interpreter.TFLiteClassifier(data).predict(xe), -1) == ye))
        test[trial.index] = {"accuracy": acc, "drop_pt": 100 * (fa - acc)}

    cfg = QuantizationConfig(data=spec, scheme="n_bit", weight_bits=3, epochs=2,
                             learning_rate=3e-4, search=SearchConfig(
                                 validation_examples=max(nval, 100), max_accuracy_drop_pt=1.0,
                                 moves=("int8_weights",), max_trials=args.search_trials))
    t = time.perf_counter()
    *_, result = search.run(f0, cfg, train, search.SearchData(
        {spec.image_key: xv}, yv, xv, xtr[:200], [xtr[i:i + 64] for i in range(0, 256, 64)]),
        observe=observe)
    case = {"weight_bits": 3, "seconds": time.perf_counter() - t, "float_test_accuracy": fa,
            "train": len(xtr), "test": len(xe), **result.report()}
    for tr in case["trials"]:
        tr["test"] = test[tr["index"]]
    return case


def _mobilenet_v2_sizes(shape, classes, rep_count):
    """keras.applications.MobileNetV2 (weights=None) through tfx-qat's QAT wrappers and one
    calibration pass on random images: (facts, float TFLite bytes, int8 TFLite bytes), both from
    the same converter."""
    from tfx_qat.quant_lib.tflite import edgetpu
    keras.utils.set_random_seed(0)
    m = keras.applications.MobileNetV2(input_shape=shape, weights=None, classes=classes)
    q, decisions = plan.quantize_with_report(m, QuantizationConfig(
        data=DataSpec(image_shape=shape, num_classes=classes)))
    rep = np.random.default_rng(0).random((rep_count,) + shape, dtype=np.float32)
    q(rep, training=True)  # one calibration pass so activation ranges are not the defaults
    float_bytes, int8_bytes = convert.convert_float(m), convert.convert_int8(q, rep)
    etpu = edgetpu.analyze(int8_bytes)
    return {"input_shape": list(shape), "classes": classes,
            "params": int(sum(np.prod(w.shape) for w in m.weights)),
            "float_bytes": len(float_bytes), "int8_bytes": len(int8_bytes),
            "size_ratio": len(float_bytes) / len(int8_bytes),
            "layers": {d: sum(1 for x in decisions if x.decision == d)
                       for d in (plan.QUANTIZE, plan.FOLD, plan.FLOAT)},
            "edgetpu_predicted_on_tpu": etpu.predicted_on_tpu,
            "edgetpu_predicted_on_cpu": etpu.predicted_on_cpu}, float_bytes, int8_bytes


def mobilenet_v2(args) -> Dict[str, Any]:
    """MobileNetV2 1.0 at the standard 224x224x3 / 1,000 classes (size only), and the 96x96 /
    10-class shape (size, latency, Edge TPU op prediction)."""
    std, _, _ = _mobilenet_v2_sizes((224, 224, 3), 1000, 8)
    out, float_bytes, int8_bytes = _mobilenet_v2_sizes((96, 96, 3), 10, 32)
    x = np.random.default_rng(1).random((args.latency_examples // 4, 96, 96, 3), dtype=np.float32)
    ms, _ = latency.timed_ms({"float": float_bytes, "int8": int8_bytes}, x, 5, runtime.RUNTIMES)
    lt, tf_ = runtime.DEPLOYMENT, runtime.SECOND
    fl, il = ms["float", lt], ms["int8", lt]
    out.update({"float_latency_ms": fl, "int8_latency_ms": il, "speed_vs_float": fl / il,
                "tf_float_latency_ms": ms["float", tf_], "tf_int8_latency_ms": ms["int8", tf_],
                "tf_speed_vs_float": ms["float", tf_] / ms["int8", tf_], **_runtimes(),
                "standard_224": std,
                "ideal_ratio_note": "float32 weights -> int8 is 4x at most; per-channel scales and "
                                    "zero points (float32 + int64 per output channel), int32 biases, "
                                    "and the graph/metadata are not shrunk"})
    return out


LATENCY_NETS = (("MobileNetV2", "MobileNetV2"), ("MobileNetV3-Small", "MobileNetV3Small"),
                ("MobileNetV3-Large", "MobileNetV3Large"), ("EfficientNet-B0", "EfficientNetB0"))
# The alternative a user has where the runtime lacks int8 hard-swish: Keras' own "minimalistic"
# MobileNetV3 (ReLU, no squeeze-excite, 3x3 kernels): a different, retrained network.
ALTERNATIVE_NETS = (("MobileNetV3-Small minimalistic", "MobileNetV3Small"),
                    ("MobileNetV3-Large minimalistic", "MobileNetV3Large"))


DEPTHWISE_FLOAT_NET = "MobileNetV3-Small"


def _depthwise_float(m, x) -> bytes:
    """The user's alternative where int8 depthwise kernels are slower than float: tfx-qat's int8
    model with every DepthwiseConv2D (and the BatchNormalization after it) kept float
    (``float_fallback_names``), QUANTIZE / DEQUANTIZE around each."""
    names = [n for layer in m.layers if type(layer).__name__ == "DepthwiseConv2D"
             for n in [layer.name] + [o.outbound_layer.name for o in layer._outbound_nodes  # noqa
                                      if type(o.outbound_layer).__name__ == "BatchNormalization"]]
    cfg = QuantizationConfig(data=DataSpec(image_shape=(224, 224, 3), num_classes=1000),
                             float_fallback_names=tuple(names))
    q = plan.quantize(m, cfg)
    qat_train.calibrate_ranges(q, [x[:4], x[4:]])
    return convert.convert_int8(q, x, float_layers=names)


def latency_224(args) -> Dict[str, Any]:
    """The four mobile networks at 224x224x3 / 1,000 classes (``weights=None``): float TFLite,
    TFLite's own post-training full-integer quantization (PTQ) of the same float model, and
    tfx-qat's int8 (``plan.quantize``, ``calibrate_ranges`` on 8 random images,
    ``convert.convert_int8``); latency as medians of interleaved passes, and how XNNPACK takes
    each model (ops delegated, partitions). Latency is ``invoke()`` alone (inputs quantized and
    set outside the timing). Random weights: latency and graph structure only."""
    out: Dict[str, Any] = {"passes": args.latency_passes, "examples_per_pass": 4, "nets": {}}
    for label, ctor in LATENCY_NETS + ALTERNATIVE_NETS:
        keras.utils.set_random_seed(0)
        m = getattr(keras.applications, ctor)(input_shape=(224, 224, 3), weights=None,
                                               classes=1000, **({"minimalistic": True}
                                                                if "minimalistic" in label else {}))
        x = np.random.default_rng(0).random((8, 224, 224, 3), dtype=np.float32) * 255
        if ctor == "MobileNetV2":  # the only one of the four without its own Rescaling
            x = x / 127.5 - 1
        t = time.perf_counter()
        q = plan.quantize(m, QuantizationConfig(data=DataSpec(image_shape=(224, 224, 3),
                                                             num_classes=1000)))
        qat_train.calibrate_ranges(q, [x[:4], x[4:]])
        models = {"float": convert.convert_float(m), "ptq_int8": convert.convert_int8(m, x),
                  "qat_int8": convert.convert_int8(q, x)}
        if label == DEPTHWISE_FLOAT_NET:
            models["qat_int8_depthwise_float"] = _depthwise_float(m, x)
        build = time.perf_counter() - t
        ms, _ = latency.timed_ms(models, x[:4], args.latency_passes, runtime.RUNTIMES)
        lt, tf_ = runtime.DEPLOYMENT, runtime.SECOND
        row = {"build_seconds": build, "runtime": runtime.name(lt), "tf_runtime": runtime.name(tf_)}
        for k, data in models.items():
            d = interpreter.delegation(data, lt)
            row[k] = {"latency_ms": ms[k, lt], "speed_vs_float": ms["float", lt] / ms[k, lt],
                      "tf_latency_ms": ms[k, tf_],
                      "tf_speed_vs_float": ms["float", tf_] / ms[k, tf_],
                      "bytes": len(data), "ops": d.ops, "delegated": d.delegated,
                      "partitions": d.partitions, "builtin": d.builtin}
        if "minimalistic" not in label:
            row["op_types"] = op_profile.compare(op_profile.profile(models["qat_int8"]).to_json(),
                                                 op_profile.profile(models["float"]).to_json())
        out["nets"][label] = row
        logging.info("latency_224 %s: %s", label,
                     {k: round(v["latency_ms"], 3) for k, v in row.items() if k in models})
    return out


def latency_folds(args) -> Dict[str, Any]:
    """What the padding and +3 folds buy, on the machine at hand: each of the four networks'
    tfx-qat int8 model with and without ``scale_fold.fold_zero_padding`` /
    ``fold_constant_adds`` (the 1/6 fold stays in both), interleaved with its float model."""
    from tfx_qat.quant_lib.qat import scale_fold
    out: Dict[str, Any] = {"passes": args.latency_passes, "nets": {}, **_runtimes()}
    for label, ctor in LATENCY_NETS:
        keras.utils.set_random_seed(0)
        m = getattr(keras.applications, ctor)(input_shape=(224, 224, 3), weights=None,
                                               classes=1000)
        x = np.random.default_rng(0).random((8, 224, 224, 3), dtype=np.float32) * 255
        cfg = QuantizationConfig(data=DataSpec(image_shape=(224, 224, 3), num_classes=1000))
        models = {"float": convert.convert_float(m)}
        for key, off in (("qat_int8", False), ("qat_int8_without", True)):
            saved = scale_fold.fold_zero_padding, scale_fold.fold_constant_adds
            if off:
                scale_fold.fold_zero_padding = scale_fold.fold_constant_adds = \
                    lambda model, protected=(): (model, [])
            try:
                q = plan.quantize(m, cfg)
            finally:
                scale_fold.fold_zero_padding, scale_fold.fold_constant_adds = saved
            qat_train.calibrate_ranges(q, [x[:4], x[4:]])
            models[key] = convert.convert_int8(q, x)
        ms, _ = latency.timed_ms(models, x[:4], args.latency_passes, runtime.RUNTIMES)
        lt, tf_ = runtime.DEPLOYMENT, runtime.SECOND
        out["nets"][label] = {k: {"latency_ms": ms[k, lt], "tf_latency_ms": ms[k, tf_],
                                  "speed_vs_float": ms["float", lt] / ms[k, lt],
                                  "tf_speed_vs_float": ms["float", tf_] / ms[k, tf_],
                                  **(validate.validate_integer(b).op_counts if k != "float" else {})}
                              for k, b in models.items()}
        logging.info("latency_folds %s: %s", label, {k: round(v, 3) for k, v in ms.items()})
    return out


def latency_markdown(r: Dict[str, Any]) -> str:
    lat = r["latency_224"]
    rerun = r.get("rerun", {}).get("latency_224")
    machine = (rerun or {}).get("machine", r["machine"])
    first = next(iter(lat["nets"].values()))
    lt, tf_ = first.get("runtime", "TF Lite"), first.get("tf_runtime")
    lines = [f"Measured {rerun['date'] if rerun else r['date']} on {machine} with `make bench` "
             f"(section `latency_224`): 224x224x3 / 1,000 classes, `weights=None`; default "
             f"XNNPACK delegate, 1 thread, batch 1, median of {lat['passes']} interleaved passes "
             f"of {lat['examples_per_pass']} images, every model on "
             + (f"**{lt}** (the runtime apps ship; the speed gate's) and on {tf_} in each pass. "
                if tf_ else f"{lt}. ")
             + "Speed is float time / int8 time; XNNPACK (on the first runtime) is ops delegated "
             "/ ops, partitions.", "",
             f"| network | float ms | PTQ int8 ms (speed) | tfx-qat int8 ms (speed) | "
             + (f"{tf_}: float ms | tfx-qat int8 ms (speed) | " if tf_ else "")
             + "XNNPACK float | XNNPACK PTQ | XNNPACK tfx-qat |",
             "|---|---|---|---|" + ("---|---|" if tf_ else "") + "---|---|---|"]
    for name, row in lat["nets"].items():
        f, p, q = row["float"], row["ptq_int8"], row["qat_int8"]
        x = lambda m: f"{m['delegated']}/{m['ops']}, {m['partitions']}"  # noqa: E731
        second = (f"{f['tf_latency_ms']:.2f} | {q['tf_latency_ms']:.2f} "
                  f"({q['tf_speed_vs_float']:.2f}x) | " if tf_ else "")
        lines.append(f"| {name} | {f['latency_ms']:.2f} | {p['latency_ms']:.2f} "
                     f"({p['speed_vs_float']:.2f}x) | {q['latency_ms']:.2f} "
                     f"({q['speed_vs_float']:.2f}x) | {second}{x(f)} | {x(p)} | {x(q)} |")
    pairs = []
    for alt in (n for n in lat["nets"] if "minimalistic" in n):
        std = alt.replace(" minimalistic", "")
        a, s = lat["nets"][alt]["qat_int8"]["latency_ms"], lat["nets"][std]["float"]["latency_ms"]
        pairs.append(f"{alt} {a:.2f} ms vs {std} float {s:.2f} ms ({s / a:.2f}x)")
    if pairs:
        lines += ["", "The *minimalistic* rows are Keras' own MobileNetV3 variant (ReLU instead of "
                  "hard-swish, no squeeze-excite, 3x3 kernels): what a user can switch to where "
                  "this runtime has no int8 hard-swish, a different network that needs its own "
                  "training and accuracy check. Its tfx-qat int8 model against the standard "
                  "network's float model: " + "; ".join(pairs) + "."]
    lines += _op_type_lines(lat) + _fold_lines(r)
    return "\n".join(lines) + "\n"


def _fold_lines(r: Dict[str, Any]) -> list:
    folds = r.get("latency_folds")
    if not folds:
        return []
    when = r.get("rerun", {}).get("latency_folds", {})
    tf_ = folds.get("tf_runtime")
    out = ["", f"What folding the padding and the gate's +3 buys (section `latency_folds`, "
           f"{when.get('date', r['date'])} on {when.get('machine', r['machine'])}, median of "
           f"{folds['passes']} interleaved passes on {folds.get('runtime', 'TF Lite')}"
           + (f" and {tf_} in each pass" if tf_ else "") + "): tfx-qat "
           "int8 with and without those two folds "
           "(hard-swish's 1/6 is folded in both).", "",
           "| network | int8 ms without (speed) | int8 ms with (speed) | "
           + (f"{tf_}: without | with | " if tf_ else "")
           + "PAD ops without / with | ADD ops without / with |",
           "|---|---|---|" + ("---|---|" if tf_ else "") + "---|---|"]
    for name, n in folds["nets"].items():
        a, b = n["qat_int8_without"], n["qat_int8"]
        second = (f"{a['tf_latency_ms']:.2f} ({a['tf_speed_vs_float']:.2f}x) | "
                  f"{b['tf_latency_ms']:.2f} ({b['tf_speed_vs_float']:.2f}x) | " if tf_ else "")
        out.append(f"| {name} | {a['latency_ms']:.2f} ({a['speed_vs_float']:.2f}x) | "
                   f"{b['latency_ms']:.2f} ({b['speed_vs_float']:.2f}x) | {second}"
                   f"{a.get('PAD', 0)} / {b.get('PAD', 0)} | {a.get('ADD', 0)} / "
                   f"{b.get('ADD', 0)} |")
    change = lambda key: [100 * (n["qat_int8"][key] / n["qat_int8_without"][key] - 1)  # noqa
                          for n in folds["nets"].values()]
    out += ["", "int8 time with the folds vs without, across the networks: "
            + "; ".join(f"{rt} {min(c):+.1f} % to {max(c):+.1f} %" for rt, c in
                        [(folds.get("runtime", "TF Lite"), change("latency_ms"))]
                        + ([(tf_, change("tf_latency_ms"))] if tf_ else [])) + "."]
    return out


_WHY = {"slower kernel": "as many ops, more time: XNNPACK's int8 kernel is slower than its "
                         "float one on this CPU (runtime)",
        "more ops": "the int8 graph computes a fused float op from several (hard-swish as ADD "
                    "+ MUL: no int8 HARD_SWISH in XNNPACK; runtime)",
        "builtin": "no XNNPACK int8 kernel: TFLite's builtin kernels (runtime)"}


def _op_type_lines(lat: Dict[str, Any]) -> list:
    """Where each tfx-qat int8 model loses time to float, op type by op type (op_profile)."""
    rows = [(name, r) for name, row in lat["nets"].items() for r in row.get("op_types", [])
            if r["loses"]]
    if not rows:
        return []
    out = ["", "Where the tfx-qat int8 models still lose to float, op type by op type "
           "(`tfx_qat.quant_lib.tflite.op_profile`: each op cut out and timed alone in the mode the whole "
           "model runs it, microseconds summed per type; ops alone sum to more than the model):",
           "", "| network | op type | int8 ops | int8 us | float ops | float us | why |",
           "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        out.append(f"| {name} | {r['op']} | {r.get('int8_count', 0)} | {r.get('int8_us', 0):.0f} "
                   f"| {r.get('float_count', 0)} | {r.get('float_us', 0):.0f} | "
                   f"{_WHY[r['loses']]} |")
    alt = lat["nets"].get(DEPTHWISE_FLOAT_NET, {}).get("qat_int8_depthwise_float")
    if alt:
        q = lat["nets"][DEPTHWISE_FLOAT_NET]["qat_int8"]
        out += ["", f"The alternative for the slower int8 depthwise kernels, measured on "
                f"{DEPTHWISE_FLOAT_NET}: every DepthwiseConv2D kept float "
                f"(`float_fallback_names`, QUANTIZE/DEQUANTIZE around each) runs "
                f"{alt['latency_ms']:.2f} ms ({alt['speed_vs_float']:.2f}x float; XNNPACK "
                f"{alt['delegated']}/{alt['ops']} ops in {alt['partitions']} partitions) against "
                f"{q['latency_ms']:.2f} ms all-int8 — "
                + ("not a way out on this runtime." if alt["latency_ms"] > q["latency_ms"] else
                   "faster here, at the cost of a model that is no longer full-integer.")]
    return out


def _on_other(r: Dict[str, Any], rerun: Dict[str, Any]) -> str:
    """" on <machine>" when a re-run section was measured on another machine than the run."""
    m = rerun.get("machine")
    return f" on {m} (ratios are comparable within a section, not across machines)" \
        if m and m != r["machine"] else ""


def timed_process(cmd, log_path: str) -> Dict[str, Any]:
    """Wall time and peak resident memory of one child process (os.wait4's rusage)."""
    t = time.perf_counter()
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise RuntimeError(f"{' '.join(cmd)} failed (status {status}); see {log_path}")
    return {"seconds": time.perf_counter() - t, "peak_rss_mb": usage.ru_maxrss / 1024}


def _component_seconds(mlmd_path: str) -> Dict[str, float]:
    """Each execution's wall time from the run's MLMD (create -> last update)."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    c = metadata_store_pb2.ConnectionConfig()
    c.sqlite.filename_uri = mlmd_path
    store = metadata_store.MetadataStore(c)
    types = {t.id: t.name.split(".")[-1] for t in store.get_execution_types()}
    return {types[e.type_id]: (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000
            for e in store.get_executions()}


def pipeline_overhead(args) -> Dict[str, Any]:
    """``tfx_qat.pipelines.cli run`` (what ``make run`` runs, fresh root, no cache) vs the bare script
    (benchmarks/bare_baseline.py), each a separate process timed as a whole, same data and epochs,
    alternated for ``--overhead-rounds`` rounds (pairs: bare script, then pipeline); the headline
    is the median pair's ratio, that pair's runs the breakdown. Both processes import tfx-qat's
    ``tfx_qat.quant_lib.qat``, which installs tfx_qat.quant_lib.internals' AutoGraph rule (the bare script for the user's ``build_model``), so neither pays
    AutoGraph's conversion of tf_keras, which was 15-16 s of each first training step (float and
    QAT) on both sides. Then the evaluator's throughput on the last pipeline run's artifacts."""
    root = os.path.join(args.out, "pipeline_run")
    epochs = ["--float-epochs", str(args.float_epochs), "--qat-epochs", str(args.qat_epochs)]
    bares, pipes = [], []
    for i in range(args.overhead_rounds):
        log.info("overhead round %d/%d: bare script, then pipeline", i + 1, args.overhead_rounds)
        bare = timed_process([sys.executable, "-m", "benchmarks.bare_baseline", "--out",
                               os.path.join(args.out, "bare.json"), "--qat-lr", str(args.qat_lr)]
                              + epochs, os.path.join(args.out, "bare.log"))
        with open(os.path.join(args.out, "bare.json")) as f:
            bare.update(json.load(f))
        bares.append(bare)
        shutil.rmtree(root, ignore_errors=True)  # a first run: fresh MLMD, artifacts and data
        os.makedirs(root)
        pipe = timed_process([sys.executable, "-m", "tfx_qat.pipelines.cli", "run", "--dataset",
                               "fashion_mnist", "--output-root", root, "--no-cache",
                               "--qat-learning-rate", str(args.qat_lr)] + epochs,
                              os.path.join(root, "bench_stdout.log"))
        with open(os.path.join(root, "summary.json")) as f:
            summary = json.load(f)
        pipe.update({"components": _component_seconds(os.path.join(root, "metadata.sqlite")),
                     "float_accuracy": summary["float_accuracy"],
                     "int8_accuracy": summary["int8_accuracy"], "summary": summary})
        pipes.append(pipe)
    thr = os.path.join(root, "bench_evaluator.json")
    subprocess.run([sys.executable, "-m", "benchmarks.bench_evaluator", "--output-root", root],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(thr) as f:
        evaluator = json.load(f)
    ratios = [p["seconds"] / b["seconds"] for b, p in zip(bares, pipes)]
    median = sorted(range(len(ratios)), key=ratios.__getitem__)[(len(ratios) - 1) // 2]
    pipe, bare = pipes[median], bares[median]
    return {"pipeline": pipe, "bare": bare, "overhead_ratio": ratios[median],
            "rounds": [{"bare_seconds": b["seconds"], "pipeline_seconds": p["seconds"]}
                       for b, p in zip(bares, pipes)],
            "epochs": {"float": args.float_epochs, "qat": args.qat_epochs},
            "pipeline_seconds": pipe["seconds"], "evaluator": evaluator}


ROWS = [("float", "float TFLite (fair reference F1)"), ("ptq_int8", "PTQ int8"),
        ("qat_int8", "QAT int8"), ("ptq_w4a8", "PTQ 4-bit weights / 8-bit act."),
        ("qat_w4a8", "QAT 4-bit weights / 8-bit act."),
        ("ptq_int8_pt", "PTQ int8, per-tensor weights"),
        ("qat_int8_pt", "QAT int8, per-tensor weights (BN folded before QAT)"),
        ("tfmot_qat_int8_pt", "QAT int8, per-tensor weights, TFMOT's transforms as is")]


BARE4_ROWS = [("float", "float TFLite (fair reference)"),
              ("tfmot_ptq_w4a8", "PTQ-4, TFMOT n-bit scheme at lr 0"),
              ("tfmot_ptq_w4a8_rep200", "PTQ-4, ranges from the 200 representative examples"),
              ("tfmot_qat_w4a8", "QAT-4, TFMOT as is (its initial ranges)"),
              ("tfx_qat_w4a8", "QAT-4, tfx-qat (layer plan, calibrated ranges)")]


V3_ROWS = [("float", "float TFLite (fair reference F1)"), ("ptq_int8", "PTQ int8"),
           ("qat_int8", "QAT int8, tfx-qat layer configs"),
           ("qat_int8_left_float", "QAT int8, those layers left float (TFMOT as is)")]


def to_markdown(r: Dict[str, Any]) -> str:
    fm, mb, tr = r["fashion_mnist"]["models"], r["mobilenet_v2"], r["fashion_mnist"]["training"]
    lg = r["fashion_mnist"]["w4a8_long"]
    lm = lg["models"]
    pk = r["fashion_mnist"]["per_tensor_keras_accuracy"]
    lines = [f"Measured {r['date']} on {r['machine']} with `{r['command']}` "
             f"({r['wall_minutes']:.1f} min). Latency: "
             f"{r.get('latency_runtime', 'TF Lite (TensorFlow 2.16)')}, XNNPACK delegate "
             "(default), 1 thread, batch 1, median of 5 passes; a table with a second runtime's "
             "columns ran every model on both runtimes in each pass." + "".join(
                 f" Section `{k}` re-run alone on {v['date']}{_on_other(r, v)} "
                 f"({v['minutes']:.1f} min, `BENCH_ARGS=\"--update {k}\"`)."
                 for k, v in r.get("rerun", {}).items()), "",
             ] + _model_table("Fashion-MNIST model", r["fashion_mnist"], ROWS)
    v3 = r["mobilenet_v3_style"]
    configs = ", ".join(f"{n} {c}" + (" (hard-sigmoid's x + 3 and x / 6)" if c == "ScalarOp" else "")
                        for c, n in v3["tfx_qat_configs"].items())
    lines += ["", f"MobileNetV3-style network ({v3['params']:,} params: Rescaling, hard-swish, "
              f"squeeze-excite), Fashion-MNIST padded to 32x32, same protocol. tfx-qat's layer "
              f"configs quantize {configs} layers that TFMOT leaves float "
              f"({v3['float_layers_left']} float layers when left as TFMOT leaves them).", "",
              ] + _model_table("MobileNetV3-style model", v3, V3_ROWS)
    if r.get("search"):
        lines += ["", search_markdown(r["search"]).rstrip()]
    o = r["overhead"]
    ev = o["evaluator"]
    lines += ["", "| measure | value | goal |", "|---|---|---|",
              f"| QAT int8 drop vs fair float | {fm['qat_int8']['delta_pt_vs_float']:.2f} pt | "
              "<= 0.1 pt |",
              f"| 4-bit, 1 fine-tuning epoch: QAT vs PTQ top-1 | "
              f"{100 * fm['qat_w4a8']['accuracy']:.2f}% vs "
              f"{100 * fm['ptq_w4a8']['accuracy']:.2f}% | QAT clearly ahead |",
              f"| 4-bit, {lg['epochs']} fine-tuning epochs: QAT vs PTQ top-1 (float reference "
              f"{100 * lm['float']['accuracy']:.2f}%) | {100 * lm['qat_w4a8']['accuracy']:.2f}% vs "
              f"{100 * lm['ptq_w4a8']['accuracy']:.2f}% | QAT clearly ahead |",
              f"| per-tensor QAT: Keras QAT model vs its int8 TFLite, top-1 | "
              f"{100 * pk['qat_int8_pt']:.2f}% vs {100 * fm['qat_int8_pt']['accuracy']:.2f}% "
              f"(TFMOT as is: {100 * pk['tfmot_qat_int8_pt']:.2f}% vs "
              f"{100 * fm['tfmot_qat_int8_pt']['accuracy']:.2f}%) | the TFLite model is the "
              "trained one |",
              f"| MobileNetV2 1.0, 224x224, 1,000 classes ({mb['standard_224']['params']:,} "
              f"params) size | {mb['standard_224']['float_bytes']:,} -> "
              f"{mb['standard_224']['int8_bytes']:,} B = {mb['standard_224']['size_ratio']:.2f}x"
              " | >= 3.5x |",
              f"| MobileNetV2-shaped (96x96, 10 classes, {mb['params']:,} params) size | "
              f"{mb['float_bytes']:,} -> {mb['int8_bytes']:,} B = {mb['size_ratio']:.2f}x | "
              "as measured |",
              f"| MobileNetV2-shaped latency float / int8{_on(mb)} | {mb['float_latency_ms']:.2f} / "
              f"{mb['int8_latency_ms']:.2f} ms ({mb['speed_vs_float']:.2f}x)"
              + (f"; {mb['tf_runtime']}: {mb['tf_float_latency_ms']:.2f} / "
                 f"{mb['tf_int8_latency_ms']:.2f} ms ({mb['tf_speed_vs_float']:.2f}x)"
                 if "tf_runtime" in mb else "") + " | as measured |",
              f"| MobileNetV2-shaped int8: Edge TPU analyzer's predicted ops on TPU | "
              f"{mb['edgetpu_predicted_on_tpu']} of "
              f"{mb['edgetpu_predicted_on_tpu'] + mb['edgetpu_predicted_on_cpu']} (layer plan: "
              f"{mb['layers']['quantized']} quantized, {mb['layers']['folded']} BN folded, "
              f"{mb['layers']['float']} float) | all |",
              f"| QAT / float training step (batch {tr['batch_size']}, steady state) | "
              f"{1000 * tr['qat_seconds_per_step']:.1f} / {1000 * tr['float_seconds_per_step']:.1f}"
              f" ms = {tr['qat_over_float']:.2f}x (vs the float fine-tuning epoch, "
              f"{1000 * tr['float_ft_seconds_per_step']:.1f} ms: "
              f"{tr['qat_seconds_per_step'] / tr['float_ft_seconds_per_step']:.2f}x) | <= 1.4x |",
              f"| pipeline / bare script, each a process timed whole (same data, epochs; "
              f"median of {len(o.get('rounds', [0]))} interleaved pairs) | "
              f"{o['pipeline']['seconds']:.0f} / {o['bare']['seconds']:.0f} s = "
              f"{o['overhead_ratio']:.2f}x | <= 1.3x |",
              f"| peak memory, pipeline / bare script process | "
              f"{o['pipeline']['peak_rss_mb']:,.0f} / {o['bare']['peak_rss_mb']:,.0f} MB | "
              "as measured |",
              f"| evaluator / raw loop doing the same work (float Keras + int8 TFLite) | "
              f"{ev['evaluator_beam']['examples_per_second']:,.0f} / "
              f"{ev['raw_float_and_int8_loop']['examples_per_second']:,.0f} ex/s = "
              f"{ev['evaluator_vs_raw_float_and_int8_loop']:.2f}x | >= 0.8x |",
              f"| evaluator / raw int8-only interpreter loop | "
              f"{ev['evaluator_beam']['examples_per_second']:,.0f} / "
              f"{ev['raw_int8_interpreter_loop']['examples_per_second']:,.0f} ex/s = "
              f"{ev['evaluator_vs_raw_int8_interpreter_loop']:.2f}x | (the evaluator also runs "
              "the float model) |"]
    return "\n".join(lines + [""] + overhead_markdown(o) + [""] + bare4_markdown(
        r["bare_tfmot_4bit"])) + "\n"


def _on(section: Dict[str, Any]) -> str:
    """" on <runtime>" where a section records the runtime its latency ran on."""
    return f" on {section['runtime']}" if "runtime" in section else ""


def _model_table(title: str, section: Dict[str, Any], rows) -> list:
    """A section's models: top-1, size, and latency on LiteRT with TF's interpreter beside it
    where the section measured both (``_measure_all``)."""
    tf_ = section.get("tf_runtime")
    lines = [f"| {title} | top-1 | vs float (pt) | size (bytes) | size ratio | latency (ms)"
             f"{_on(section)} | speed vs float |"
             + (f" {tf_}: latency (ms) | speed vs float |" if tf_ else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|" if tf_ else "")]
    for key, label in rows:
        m = section["models"][key]
        lines.append(f"| {label} | {100 * m['accuracy']:.2f}% | {-m['delta_pt_vs_float']:+.2f} | "
                     f"{m['bytes']:,} | {m['size_ratio']:.2f}x | {m['latency_ms']:.4f} | "
                     f"{m['speed_vs_float']:.2f}x |"
                     + (f" {m['tf_latency_ms']:.4f} | {m['tf_speed_vs_float']:.2f}x |"
                        if tf_ else ""))
    return lines


def overhead_markdown(o: Dict[str, Any]) -> list:
    """Where the pipeline's and the bare script's seconds go."""
    p, b = o["pipeline"], o["bare"]
    comp = ", ".join(f"{k} {v:.0f}" for k, v in p["components"].items())
    phases = ", ".join(f"{k.replace('_', ' ')} {v:.0f}" for k, v in b["phases_seconds"].items())
    return [f"Pipeline vs bare script (`benchmarks/bare_baseline.py`: plain TFMOT `quantize_model`, "
            f"TFLite converter, no checks or artifacts): pipeline {p['seconds']:.0f} s in all, of "
            f"which the components (MLMD execution times, s): {comp}; the rest is process start, "
            f"imports, data ingestion and the run summary. Bare script {b['seconds']:.0f} s: "
            f"{phases} (s). Top-1 float / int8: pipeline {100 * p['float_accuracy']:.2f}% / "
            f"{100 * p['int8_accuracy']:.2f}%, bare script {100 * b['float_accuracy']:.2f}% / "
            f"{100 * b['int8_accuracy']:.2f}%." + ("" if "rounds" not in o else
            " All rounds (bare / pipeline, s): " + "; ".join(
                f"{r['bare_seconds']:.0f} / {r['pipeline_seconds']:.0f}" for r in o["rounds"])
            + ".")]


def bare4_markdown(b: Dict[str, Any]) -> list:
    lines = [f"Bare-TFMOT 4-bit protocol (F0: {b['float_epochs']} epochs at lr 1e-3, batch "
             f"{b['batch_size']}; QAT and the fair float reference: 1 epoch at lr 1e-4; PTQ-4 "
             "ranges from 5,120 training examples at learning rate 0), and tfx-qat's QAT-4 under "
             f"the same protocol; mean of {b['seeds']} seeds (min-max):", "",
             "| model | top-1 | vs fair float (pt) | size (bytes) |", "|---|---|---|---|"]
    for key, label in BARE4_ROWS:
        m = b["models"][key]
        lines.append(f"| {label} | {100 * m['accuracy']:.2f}% ({100 * m['min']:.2f}-"
                     f"{100 * m['max']:.2f}) | {-m['delta_pt_vs_float']:+.2f} | {m['bytes']:,} |")
    lines += ["", "QAT-4 (TFMOT as is) minus PTQ-4, per seed: " + ", ".join(
        f"{d:+.2f}" for d in b["qat_minus_ptq_pt"]) + " pt."]
    return lines


def search_markdown(s: Dict[str, Any]) -> str:
    """One table per searched weight width: every trial on validation (selection) and test."""
    f, a8 = s["float"], s["all_8bit"]
    lines = [f"Accuracy-aware search (`QuantizationConfig.search`, move: 8-bit weights for the most "
             f"sensitive layers), budget {s['cases'][0]['budget_pt']} pt top-1 below the float "
             f"model F0 (trained on {s['train']:,} images). Trials are selected on a validation "
             f"split ({s['validation']:,} held-out training images) and also scored on the "
             f"{s['test']:,} test images, which the search never sees. Float F0: test top-1 "
             f"{100 * f['accuracy']:.2f}%, {f['bytes']:,} bytes; all-8-bit QAT: "
             f"{100 * a8['accuracy']:.2f}% ({-a8['drop_pt']:+.2f} pt), {a8['bytes']:,} bytes."]
    for c in s["cases"]:
        top = ", ".join(f"{x['name']} {x['drop_pt']:+.2f}" for x in c["sensitivity"][:3])
        lines += ["", f"{c['weight_bits']}-bit weights / 8-bit activations: sensitivity of "
                  f"{len(c['sensitivity'])} layers + {len(c['trials'])} trial(s) in "
                  f"{c['seconds']:.0f} s; most sensitive (pt lost with that layer alone at "
                  f"{c['weight_bits']} bits): {top}. {c['reason']}.", ""] + _trial_rows(c)
    d = s.get("digits_warned")
    if d:
        lines += ["", f"The warned case: sklearn's digits, {d['weight_bits']}-bit weights, budget "
                  f"{d['budget_pt']} pt on the CLI's carve-out of {d['examples']} validation "
                  f"images ({d['train']:,} training, {d['test']} test images; float test top-1 "
                  f"{100 * d['float_test_accuracy']:.2f}%). Warning: {d['warning']}. "
                  f"{d['reason']}.", ""] + _trial_rows(d)
    return "\n".join(lines) + "\n"


def _trial_rows(c: Dict[str, Any]):
    """A search's trials: the paired 95 % interval of each validation drop, test beside it."""
    rows = ["| trial | move | change | validation top-1 (drop, 95% paired) | test top-1 (drop) | "
            "size (bytes) | kept |", "|---|---|---|---|---|---|---|"]
    for t in c["trials"]:
        ci = ("" if t.get("drop_low_pt") is None else
              f" [{t['drop_low_pt']:+.2f}, {t['drop_high_pt']:+.2f}]")
        rows.append(f"| {t['index']} | {t['move']} | {t['change']} | {100 * t['accuracy']:.2f}% "
                    f"({t['drop_pt']:+.2f}{ci}) | {100 * t['test']['accuracy']:.2f}% "
                    f"({t['test']['drop_pt']:+.2f}) | {t['int8_bytes']:,} | "
                    f"{'yes' if t['index'] == c['chosen'] else ''} |")
    return rows


SECTIONS = {"fashion_mnist": fashion_mnist, "search": search_low_bit,
            "mobilenet_v3_style": mobilenet_v3_style, "mobilenet_v2": mobilenet_v2,
            "bare_tfmot_4bit": bare_tfmot_4bit, "overhead": pipeline_overhead,
            "latency_224": latency_224, "latency_folds": latency_folds,
            "experiments_store": bench_experiments.experiments_store,
            "experiments_example": bench_experiments.experiments_example}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--float-epochs", type=int, default=5)
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--qat-lr", type=float, default=1e-4)
    p.add_argument("--long-epochs", type=int, default=3,
                   help="fine-tuning epochs of the second 4-bit comparison")
    p.add_argument("--bare4-float-epochs", type=int, default=2,
                   help="float epochs (batch 128) of the bare-TFMOT 4-bit protocol")
    p.add_argument("--bare4-seeds", type=int, default=3,
                   help="seeds the bare-TFMOT 4-bit protocol is repeated for")
    p.add_argument("--v3-float-epochs", type=int, default=3,
                   help="float epochs of the MobileNetV3-style network")
    p.add_argument("--overhead-rounds", type=int, default=3,
                   help="alternating bare-script / pipeline runs; each side's fastest counts")
    p.add_argument("--representative", type=int, default=200)
    p.add_argument("--latency-examples", type=int, default=400)
    p.add_argument("--latency-passes", type=int, default=15,
                   help="interleaved passes of the 224x224 latency section")
    p.add_argument("--experiments-runs", type=int, default=1000,
                   help="runs in the synthetic MLMD store `experiments` lists")
    p.add_argument("--search-budget-pt", type=float, default=1.0,
                   help="accuracy budget of the 4-bit search (percentage points)")
    p.add_argument("--search-trials", type=int, default=8)
    p.add_argument("--search-weight-bits", type=lambda t: [int(b) for b in t.split(",")],
                   default=[4, 3], help="weight widths searched, comma-separated")
    p.add_argument("--only", type=lambda t: t.split(","),
                   help="development: run these sections only (comma-separated: "
                        "fashion_mnist, search, mobilenet_v3_style, mobilenet_v2, bare_tfmot_4bit, "
                        "overhead, latency_224, latency_folds, experiments_store, "
                        "experiments_example), into "
                        "bench_only.json")
    p.add_argument("--update", type=lambda t: t.split(","),
                   help="re-run these sections of <out>/bench.json in place (comma-separated); "
                        "the table names them and their date")
    p.add_argument("--skip-pipeline", action="store_true", help="no pipeline/evaluator runs")
    p.add_argument("--limit", type=int, help="smoke test: first N training images only")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    r: Dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": cpu_name(),
                         "command": "make bench", "protocol": __doc__.split("\n\n")[1],
                         "latency_runtime": runtime.name(runtime.DEPLOYMENT)}
    if args.only:  # development: the named sections alone, in bench_only.json
        for name in args.only:
            r[name] = SECTIONS[name](args)
        with open(os.path.join(args.out, "bench_only.json"), "w") as f:
            json.dump(r, f, indent=2)
        print(json.dumps(r, indent=1)[:20000])
        return 0
    if args.update:  # re-measure some sections of an existing run; the table says which
        with open(os.path.join(args.out, "bench.json")) as f:
            r = json.load(f)
        if set(args.update) >= set(LATENCY_SECTIONS):  # the tables that share one runtime line
            r["latency_runtime"] = runtime.name(runtime.DEPLOYMENT)
        for name in args.update:
            t = time.time()
            r[name] = SECTIONS[name](args)
            r.setdefault("rerun", {})[name] = {"date": time.strftime("%Y-%m-%d"),
                                               "minutes": (time.time() - t) / 60,
                                               "machine": cpu_name()}
        return _write(r, args)
    if not args.skip_pipeline:  # first: the processes it times start on an idle machine
        r["overhead"] = pipeline_overhead(args)
    r["fashion_mnist"] = fashion_mnist(args)
    r["search"] = search_low_bit(args)
    r["mobilenet_v3_style"] = mobilenet_v3_style(args)
    r["mobilenet_v2"] = mobilenet_v2(args)
    r["bare_tfmot_4bit"] = bare_tfmot_4bit(args)
    r["latency_224"] = latency_224(args)
    r["latency_folds"] = latency_folds(args)
    r["experiments_store"] = bench_experiments.experiments_store(args)
    r["experiments_example"] = bench_experiments.experiments_example(args)
    r["wall_minutes"] = (time.time() - t0) / 60
    return _write(r, args)


# Sections timed on the run's ``latency_runtime`` (latency_224 and latency_folds name their own).
LATENCY_SECTIONS = ("fashion_mnist", "mobilenet_v3_style", "mobilenet_v2")


def _write(r: Dict[str, Any], args) -> int:
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump(r, f, indent=2)
    if "overhead" in r:
        with open(os.path.join(args.out, "bench.md"), "w") as f:
            f.write(to_markdown(r))
        print(to_markdown(r))
    print(f"results: {os.path.join(args.out, 'bench.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
