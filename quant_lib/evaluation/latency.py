"""Latency of the int8 and float models on the runtimes apps ship (LiteRT, TF's interpreter
beside it), per-op profiles, and the optional int8 speed gate, which says whose CPU it measured."""
from __future__ import annotations

import dataclasses
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)


def latency_ms(model_bytes: bytes, images, repeats: int = 3) -> Optional[float]:
    """Median per-example latency of a TFLite model on the deployment runtime (LiteRT):
    ``invoke()`` alone, one thread, batch 1, default (XNNPACK) delegate; the median over
    ``repeats`` passes of the per-pass mean."""
    return interleaved_ms({"model": model_bytes}, images, repeats)["model"]


def compare_latency(int8_bytes: bytes, float_bytes: Optional[bytes], inputs,
                    repeats: int = 5) -> Dict[str, object]:
    """Per-example latency of the int8 model and its float reference on LiteRT (the figures the
    speed gate uses) and on TF's interpreter (``tf_*``), ``invoke()`` alone, 1 thread, batch 1,
    default XNNPACK delegate: the median over ``repeats`` passes, each pass running every model
    on every runtime in turn, so all see the same machine state; with how XNNPACK takes each
    model (``interpreter.delegation``: an op it leaves to the builtin kernels is why an int8 model can
    be slower than float) and how far the two runtimes' raw int8 outputs differ on these inputs
    (quantized steps; 0: bit-identical)."""
    from tfx_qat.quant_lib.artifacts import records
    from tfx_qat.quant_lib.tflite import cpu, interpreter, runtime
    models = {"int8": int8_bytes, **({"float": float_bytes} if float_bytes else {})}
    ms, runners = timed_ms(models, inputs, repeats, runtime.RUNTIMES)
    lt, tf = runtime.DEPLOYMENT, runtime.SECOND
    # Raw int8 outputs, each example at batch 1 as timed (no batch resize: a model whose graph
    # fixes its batch cannot take one).
    diff = np.abs(runners["int8", lt].outputs_at_batch_one(inputs).astype(np.float64)
                  - runners["int8", tf].outputs_at_batch_one(inputs).astype(np.float64))
    return records.Evaluation(
        latency_runtime=runtime.name(lt), tf_runtime=runtime.name(tf),
        int8_latency_ms=ms["int8", lt], float_latency_ms=ms.get(("float", lt)),
        tf_int8_latency_ms=ms["int8", tf], tf_float_latency_ms=ms.get(("float", tf)),
        int8_runtimes_max_abs_diff=float(diff.max()) if diff.size else 0.0,
        latency_cpu=cpu.read().describe(), latency_int8_dot=cpu.read().int8_dot,
        int8_xnnpack=interpreter.delegation(int8_bytes, lt).describe(),
        float_xnnpack=interpreter.delegation(float_bytes, lt).describe() if float_bytes else None)


def op_profiles(int8_bytes: bytes, float_bytes: Optional[bytes]) -> Dict[str, Dict]:
    """Where each model's time goes, op type by op type (``tfx_qat.quant_lib.tflite.op_profile``); a model the
    profiler cannot cut (control flow) gets its reason instead."""
    from tfx_qat.quant_lib.tflite import op_profile
    out = {}
    for k, b in (("int8", int8_bytes), ("float", float_bytes)):
        if b:
            try:
                out[k] = op_profile.profile(b).to_json()
            except ValueError as e:
                out[k] = {"error": str(e)}
    return out


def interleaved_ms(models: Dict[str, bytes], inputs, passes: int) -> Dict[str, float]:
    """Median over ``passes`` interleaved passes of each model's mean ``invoke()`` time per
    example on the deployment runtime (ms; 1 thread, batch 1, default XNNPACK delegate)."""
    from tfx_qat.quant_lib.tflite import runtime
    ms, _ = timed_ms(models, inputs, passes, (runtime.DEPLOYMENT,))
    return {k: v for (k, _), v in ms.items()}


def timed_ms(models: Dict[str, bytes], inputs, passes: int, runtimes: Sequence[str]):
    """({(model, runtime): median over ``passes`` of the pass's mean ``invoke()`` ms per example},
    the runners): each pass runs every model on every runtime in turn, after one warm-up pass."""
    from tfx_qat.quant_lib.tflite import interpreter
    runners = {(k, rt): interpreter.TFLiteClassifier(b, num_threads=1, rt=rt)
               for k, b in models.items() for rt in runtimes}
    for r in runners.values():
        r.invoke_seconds(inputs)
    times: Dict[tuple, List[float]] = {k: [] for k in runners}
    for _ in range(passes):
        for k, r in runners.items():
            times[k].append(1000 * statistics.mean(r.invoke_seconds(inputs)))
    return {k: statistics.median(v) for k, v in times.items()}, runners


NOT_MEASURABLE = "not measurable on this CPU"


def speed_gate(cfg, latency) -> Tuple[object, List[str]]:
    """(``latency`` with ``speed_gate`` set, the blocking reasons) of ``cfg.min_int8_speedup``."""
    status, failures = _speed_check(cfg.min_int8_speedup, latency, cfg.speed_gate_any_cpu)
    return dataclasses.replace(latency, speed_gate=status), failures


def speed_notes(latency) -> List[str]:
    """What the blessing's reasons say of a speed gate that was not applied."""
    status = latency.speed_gate or ""
    return [f"EvalConfig.min_int8_speedup: {status}"] if status.startswith(NOT_MEASURABLE) else []


def _speed_check(min_speedup: Optional[float], latency, any_cpu: bool) -> Tuple[str, List[str]]:
    """On a CPU without int8 dot-product instructions (``tfx_qat.quant_lib.tflite.cpu``) the int8/float ratio
    measured here cannot predict the app's device's: it does not block unless ``any_cpu``."""
    if min_speedup is None:
        return None, []
    f, i = latency.float_latency_ms, latency.int8_latency_ms
    if not f:
        return "failed", [
            f"EvalConfig.min_int8_speedup={min_speedup:g} is set but there is no float TFLite "
            "reference to compare with: IntegerExporter writes one from a Keras float model "
            "(base_model=, or the copy QuantizeTrainer keeps of a rebuilt one)"]
    if f / i >= min_speedup:
        return "passed", []
    if latency.latency_int8_dot is False and not any_cpu:
        return (f"{NOT_MEASURABLE} (no int8 dot product): int8 {f / i:.2f}x float on "
                f"{latency.latency_cpu}; EvalConfig.min_int8_speedup={min_speedup:g} not applied "
                "(EvalConfig.speed_gate_any_cpu=True gates on this worker's speed)"), []
    return "failed", [
        f"int8 speed {f / i:.2f}x float on {latency.latency_runtime} ({i:.4g} vs {f:.4g} ms per "
        f"example, invoke() alone, 1 thread; CPU {latency.latency_cpu}) is below "
        f"EvalConfig.min_int8_speedup={min_speedup:g}; int8: {latency.int8_xnnpack}; float: "
        f"{latency.float_xnnpack}"]
