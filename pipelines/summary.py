"""The run summary, read from MLMD (not from guessed paths) for the latest run of a pipeline."""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Union

from tfx_qat.components import keys
from tfx_qat.pipelines import store
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.artifacts.report_files import Metrics
from tfx_qat.quant_lib.artifacts.run_summary import (AppSummary, ArtifactUris, ClassChange,
                                                     EdgeTpuSummary, QatSummary, RunSummary,
                                                     SearchSummary)
from tfx_qat.quant_lib.qat.train import TRAINING_STATS_FILE
from tfx_qat.quant_lib.tflite import cpu


def _outputs(run: store.Run) -> Dict[str, Any]:
    """The run's tfx-qat artifacts by component and output key (None where the run has none)."""
    return {
        "blessing": run.output(["QuantEvaluator"], keys.BLESSING),
        "evaluation": run.output(["QuantEvaluator"], keys.EVALUATION),
        "int8": run.output(["IntegerExporter"], keys.QUANTIZED_MODEL),
        "qat": run.output(["QuantizeTrainer"], keys.QAT_MODEL),
        "pushed": run.output(store.PUSHERS, "pushed_model"),
        "model_run": run.output(["Trainer"], "model_run"),
    }


def build_summary(metadata_path: str, pipeline_name: str) -> RunSummary:
    """The pipeline's latest run (summary.json; the lines format_summary prints)."""
    run = store.Reader(store.connect(metadata_path)).latest_run(pipeline_name)
    arts = _outputs(run)
    blessing, exported, qat_model, pushed, evaluation = (
        arts[k] for k in ("blessing", "int8", "qat", "pushed", "evaluation"))
    b, x, q, p, ev = (store.record(a, r) for a, r in (
        (blessing, records.Blessing), (exported, records.Int8Model), (qat_model, records.QatModel),
        (pushed, records.Pushed), (evaluation, records.Evaluation)))
    float_stats = store.read_json(arts["model_run"] and arts["model_run"].uri,
                                  TRAINING_STATS_FILE) or {}
    pushed_path: Optional[str] = None
    if pushed is not None and p.pushed:
        pushed_path = os.path.join(p.pushed_destination, keys.TFLITE_FILE)
    head = b.headline
    acc = head["metric"] == "accuracy"
    report = evaluation and os.path.join(evaluation.uri, keys.REPORT_FILE)
    return RunSummary(
        task=b.task or "multiclass",
        float_mae=b.float_mae, int8_mae=b.int8_mae,
        float_accuracy=head["float"] if acc else None,
        int8_accuracy=head["int8"] if acc else None,
        delta_pt=-100.0 * head["delta"] if acc else None,
        float_tflite_bytes=x.float_tflite_bytes,
        int8_tflite_bytes=x.int8_tflite_bytes,
        blessed=bool(b.blessed),
        pushed_path=pushed_path,
        size_ratio_float_over_int8=(x.float_tflite_bytes / x.int8_tflite_bytes
                                    if x.float_tflite_bytes and x.int8_tflite_bytes else None),
        parity_top1_agreement=x.parity_top1_agreement,
        parity_near_ties=x.parity_near_ties, parity_examples=x.parity_examples,
        parity_max_abs_error=x.parity_max_abs_error,
        edgetpu=exported and EdgeTpuSummary(
            predicted_ops_on_tpu=x.edgetpu_predicted_ops_on_tpu,
            predicted_ops_on_cpu=x.edgetpu_predicted_ops_on_cpu,
            predicted_first_unmapped=x.edgetpu_predicted_first_unmapped,
            compiler_status=x.edgetpu_compiler_status,
            compiler_message=x.edgetpu_compiler_message,
            ops_on_tpu=x.edgetpu_ops_on_tpu, ops_on_cpu=x.edgetpu_ops_on_cpu),
        qat=qat_model and QatSummary(
            int8_method=q.int8_method,
            quantized_layers=q.quantized_layers,
            folded_layers=q.folded_layers,
            float_layers=q.float_layers,
            float_layer_names=q.float_layer_names or [],
            qat_seconds_per_step=q.qat_seconds_per_step,
            float_seconds_per_step=float_stats.get("seconds_per_step"),
            report=os.path.join(qat_model.uri, keys.QAT_REPORT_FILE),
            search=q.search_status and SearchSummary(
                status=q.search_status, reason=q.search_reason, trials=q.search_trials,
                warning=q.search_warning)),
        app=exported and AppSummary(
            metadata=x.metadata_writer, metadata_limits=x.metadata_limits or [],
            labels_source=x.labels_source,
            pushed_files=sorted(store.listdir(p.pushed_destination)) if pushed_path else []),
        baseline_check=b.baseline_check,
        blessing_reasons=b.blessing_reasons or [],
        eval_examples=b.eval_examples,
        int8_top1_ties=ev.int8_top1_ties,
        **_evidence(evaluation),
        int8_latency_ms=b.int8_latency_ms,
        float_latency_ms=b.float_latency_ms,
        latency_runtime=b.latency_runtime,
        tf_int8_latency_ms=b.tf_int8_latency_ms,
        tf_float_latency_ms=b.tf_float_latency_ms,
        tf_runtime=b.tf_runtime, latency_cpu=b.latency_cpu, speed_gate=b.speed_gate,
        int8_runtimes_max_abs_diff=b.int8_runtimes_max_abs_diff,
        int8_xnnpack=b.int8_xnnpack,
        float_xnnpack=b.float_xnnpack, latency_int8_dot=b.latency_int8_dot,
        report=report if report and store.exists(report) else None,
        report_status=ev.report_status,
        artifacts=ArtifactUris(blessing=blessing and blessing.uri,
                               evaluation=evaluation and evaluation.uri,
                               int8_model=exported and exported.uri))


def report_line(s: RunSummary) -> Optional[str]:
    """Where the run report is, or, loudly, why it is not there."""
    if s.report:
        return f"  report         : {s.report}"
    if (s.report_status or "").startswith("failed"):
        return f"  report         : NOT WRITTEN ({s.report_status})"
    return None


def _evidence(evaluation) -> Dict[str, Any]:
    """From metrics.json: per_class (class -> support, float, int8, delta_pt, paired 95 %
    interval in pt) and paired_auc (two classes) or paired_mae (regression) on the whole split."""
    overall = Metrics.load(store.read_json(evaluation and evaluation.uri,
                                           keys.METRICS_FILE)).overall
    if overall is None:
        return {"per_class": {}, "paired_auc": None, "paired_mae": None}
    return {"per_class": {c: ClassChange(
                support=v.support, float_accuracy=v.accuracy["float"],
                int8_accuracy=v.accuracy["int8"],
                delta_pt=100 * (v.accuracy["int8"] - v.accuracy["float"]),
                interval_pt=v.paired and tuple(v.paired.interval_pt))
                          for c, v in (overall.per_class_accuracy or {}).items()},
            "paired_auc": overall.paired_auc,
            "paired_mae": overall.paired if overall.is_regression and overall.paired else None}


def _evidence_lines(s: RunSummary) -> list:
    """The whole split's paired AUC (two classes) or MAE (regression) change, then the per-class
    table (up to 40 classes)."""
    a, m = s.paired_auc, s.paired_mae
    per_class = _per_class_lines(s.per_class) if s.per_class and len(s.per_class) <= 40 else []
    if a and a.n:
        return [f"  AUC            : float {a.float_auc:.4f}, int8 {a.int8_auc:.4f}; int8 - "
                f"float {a.auc_diff:+.4f} [paired 95 % {a.interval[0]:+.4f}, "
                f"{a.interval[1]:+.4f}] (DeLong)"] + per_class
    if m and m.n:
        return [f"  MAE change     : int8 - float {m.mae_diff:+.4g} [paired 95 % "
                f"{m.interval[0]:+.4g}, {m.interval[1]:+.4g}]"]
    return per_class


def _per_class_lines(per_class: Dict[str, ClassChange]) -> list:
    """Each class's int8-minus-float with its paired interval; drops beyond noise marked."""
    cells = []
    for c, v in per_class.items():
        lo, hi = v.interval_pt or (float("nan"), float("nan"))
        cells.append(f"{c}: {v.delta_pt:+.1f} [{lo:+.1f},{hi:+.1f}]" + ("*" if hi < 0 else ""))
    rows = ["  ".join(cells[i:i + 4]) for i in range(0, len(cells), 4)]
    return ([f"  per class      : int8 - float pt [paired 95 % interval]; * drop beyond noise"]
            + [f"                   {r}" for r in rows])


def _latency_text(s: RunSummary) -> str:
    """Both runtimes' figures, the deployment runtime's (LiteRT: the speed gate's) first."""
    if not (s.int8_latency_ms and s.float_latency_ms):
        return "n/a"
    text = (f"int8 {s.int8_latency_ms:.4g} ms vs float {s.float_latency_ms:.4g} ms per "
            f"example on {s.latency_runtime or 'TFLite (runtime not recorded)'} (1 thread, "
            "batch 1, XNNPACK; "
            f"int8 {s.float_latency_ms / s.int8_latency_ms:.2f}x the float speed)")
    if s.tf_int8_latency_ms and s.tf_float_latency_ms:
        text += (f"\n                   {s.tf_runtime}: int8 {s.tf_int8_latency_ms:.4g} ms "
                 f"vs float {s.tf_float_latency_ms:.4g} ms "
                 f"({s.tf_float_latency_ms / s.tf_int8_latency_ms:.2f}x)")
    if s.int8_runtimes_max_abs_diff:
        text += (f"\n                   raw int8 outputs differ between the runtimes by up to "
                 f"{s.int8_runtimes_max_abs_diff:.4g} quantized steps")
    if s.latency_cpu:
        text += f"\n                   CPU: {s.latency_cpu}"
    return text


def _model_lines(s: RunSummary) -> list:
    """How the runtime takes each model, parity, Edge TPU, QAT layers and the search."""
    out = []
    if s.int8_xnnpack:
        out.append(f"  XNNPACK        : int8 {s.int8_xnnpack.replace('XNNPACK ', '')}"
                   + (f"; float {s.float_xnnpack.replace('XNNPACK ', '')}"
                      if s.float_xnnpack else ""))
    if s.int8_latency_ms and s.float_latency_ms and s.int8_latency_ms > s.float_latency_ms:
        out.append(f"  WARNING        : the int8 model is SLOWER than float on this CPU: "
                   f"{cpu.slow_cause(s.to_json())}")
    if s.parity_top1_agreement is not None:
        ties = f" (+{s.parity_near_ties} near ties)" if s.parity_near_ties else ""
        out.append(f"  export parity  : Keras-QAT vs TFLite agreement "
                   f"{100 * s.parity_top1_agreement:.2f}%{ties}, "
                   f"max |error| {s.parity_max_abs_error:.4f}")
    e = s.edgetpu
    if e and e.predicted_ops_on_tpu is not None:
        total = e.predicted_ops_on_tpu + e.predicted_ops_on_cpu
        out.append(f"  Edge TPU       : predicted {e.predicted_ops_on_tpu}/{total} ops on TPU "
                   f"({e.predicted_first_unmapped or 'no split'}); compiler {e.compiler_status}")
    q = s.qat
    if q and q.quantized_layers is not None:
        ratio = ""
        if q.float_seconds_per_step:
            ratio = (f"; step time QAT {1000 * q.qat_seconds_per_step:.1f} ms vs float "
                     f"{1000 * q.float_seconds_per_step:.1f} ms "
                     f"({q.qat_seconds_per_step / q.float_seconds_per_step:.2f}x)")
        out.append("  int8 method    : post-training quantization of the float model (the "
                   "search measured it at least as good as QAT; no QAT ran for it)"
                   if q.int8_method == "ptq" else
                   f"  QAT layers     : {q.quantized_layers} quantized, "
                   f"{q.folded_layers} BN folded, {q.float_layers} float{ratio}")
    if q and q.search:
        out.append(f"  search         : {q.search.trials} trial(s): {q.search.reason}")
        if q.search.warning:
            out.append(f"  search WARNING : {q.search.warning}")
    return out


def format_summary(s: Union[RunSummary, Mapping[str, Any]]) -> str:
    """The run summary as ``make run`` prints it (``s``: a RunSummary or a parsed summary.json)."""
    s = RunSummary.load(s)

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"

    def size(v):
        return "n/a" if v is None else f"{v / 1024:.1f} KiB ({v} bytes)"

    ratio = ""
    if s.float_tflite_bytes and s.int8_tflite_bytes:
        r = s.float_tflite_bytes / s.int8_tflite_bytes
        ratio = f"{r:.2f}x smaller" if r >= 1 else f"{1 / r:.2f}x larger (quantization parameters)"
    delta = "n/a" if s.delta_pt is None else f"{s.delta_pt:+.2f}"
    latency = _latency_text(s)
    if s.task == "regression":
        headline = [f"  float MAE      : {s.float_mae:.4f}   ({s.eval_examples} eval "
                    "examples)", f"  int8 MAE       : {s.int8_mae:.4f}"]
    else:
        headline = [
            f"  float accuracy : {pct(s.float_accuracy)}   ({s.eval_examples} eval "
            "examples)", f"  int8 accuracy  : {pct(s.int8_accuracy)}",
            f"  delta          : {delta} pt (float minus int8)"]
    lines = [
        "=" * 64,
        f"tfx-qat run summary ({s.task} model)",
        *headline,
        f"  float TFLite   : {size(s.float_tflite_bytes)}",
        f"  int8 TFLite    : {size(s.int8_tflite_bytes)} {ratio}",
        f"  latency        : {latency}",
        f"  blessed        : {'yes' if s.blessed else 'NO'}",
    ]
    lines[len(headline) + 2:len(headline) + 2] = _evidence_lines(s)
    lines[-1:-1] = _model_lines(s)
    lines += [f"    - {r}" for r in s.blessing_reasons]
    if s.baseline_check:
        lines.append(f"  baseline       : {s.baseline_check}")
    lines.append(f"  pushed         : {s.pushed_path or 'nothing pushed (model not blessed)'}")
    app = s.app
    if app and app.metadata:
        lines.append(f"  app files      : {', '.join(app.pushed_files) or '-'}; TFLite metadata "
                     f"{app.metadata}, labels from {app.labels_source}")
        lines += [f"    limit: {x}" for x in app.metadata_limits]
    if report_line(s):
        lines.append(report_line(s))
    lines.append("=" * 64)
    return "\n".join(lines)
