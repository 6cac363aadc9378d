"""The run summary, read from MLMD (not from guessed paths) for the latest run of a pipeline."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.io import fileio
from tfx.orchestration import metadata

from components import keys
from quant_lib.qat import TRAINING_STATS_FILE

SUMMARY_KEYS = ("float_accuracy", "int8_accuracy", "delta_pt", "float_tflite_bytes",
                "int8_tflite_bytes", "blessed", "pushed_path")
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


def _prop(artifact, key) -> Any:
    if key not in artifact.custom_properties:
        return None
    v = artifact.custom_properties[key]
    return getattr(v, v.WhichOneof("value"))


def latest_run_outputs(metadata_path: str, pipeline_name: str) -> Dict[str, list]:
    """Output artifacts of every execution in the pipeline's latest run, keyed by artifact type."""
    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(metadata_path))
    runs = [c for c in store.get_contexts_by_type("pipeline_run")
            if any(p.name == pipeline_name
                   for p in store.get_parent_contexts_by_context(c.id))] or \
        store.get_contexts_by_type("pipeline_run")
    if not runs:
        raise RuntimeError(f"no pipeline run recorded in {metadata_path}")
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    execs = store.get_executions_by_context(run.id)
    events = store.get_events_by_execution_ids([e.id for e in execs])
    ids = sorted({e.artifact_id for e in events if e.type in _OUTPUT_EVENTS})
    types = {t.id: t.name for t in store.get_artifact_types()}
    out: Dict[str, list] = {}
    for a in store.get_artifacts_by_id(ids):
        out.setdefault(types[a.type_id], []).append(a)
    return out


def _float_training_stats(model_runs) -> Dict[str, Any]:
    """Float-training facts the Trainer module wrote to its ModelRun artifact, if any."""
    for run in model_runs:
        path = os.path.join(run.uri, TRAINING_STATS_FILE)
        if fileio.exists(path):
            with fileio.open(path) as f:
                return json.loads(f.read())
    return {}


def build_summary(metadata_path: str, pipeline_name: str) -> Dict[str, Any]:
    arts = latest_run_outputs(metadata_path, pipeline_name)
    blessing = (arts.get("ModelBlessing") or [None])[-1]
    exported = next((a for a in arts.get("Model", []) if keys.P_INT8_BYTES in a.custom_properties),
                    None)
    pushed = (arts.get("PushedModel") or [None])[-1]
    qat_model = next((a for a in arts.get("Model", [])
                      if keys.P_QAT_SECONDS_PER_STEP in a.custom_properties), None)
    float_stats = _float_training_stats(arts.get("ModelRun", []))
    pushed_path: Optional[str] = None
    if pushed is not None and _prop(pushed, "pushed") == 1:
        pushed_path = os.path.join(_prop(pushed, "pushed_destination"), keys.TFLITE_FILE)
    float_acc = int8_acc = delta = None
    if blessing is not None and _prop(blessing, keys.P_FLOAT_CORRECT) is not None:
        n = _prop(blessing, keys.P_EVAL_EXAMPLES)
        float_acc = _prop(blessing, keys.P_FLOAT_CORRECT) / n
        int8_acc = _prop(blessing, keys.P_INT8_CORRECT) / n
        delta = (float_acc - int8_acc) * 100.0
    summary = {
        "task": (blessing and _prop(blessing, "task")) or "multiclass",
        "float_mae": blessing and _prop(blessing, "float_mae"),  # regression
        "int8_mae": blessing and _prop(blessing, "int8_mae"),
        "float_accuracy": float_acc,
        "int8_accuracy": int8_acc,
        "delta_pt": delta,
        "float_tflite_bytes": exported and _prop(exported, keys.P_FLOAT_BYTES),
        "int8_tflite_bytes": exported and _prop(exported, keys.P_INT8_BYTES),
        "blessed": bool(blessing and _prop(blessing, keys.P_BLESSED) == 1),
        "pushed_path": pushed_path,
        "size_ratio_float_over_int8": (
            _prop(exported, keys.P_FLOAT_BYTES) / _prop(exported, keys.P_INT8_BYTES)
            if exported and _prop(exported, keys.P_FLOAT_BYTES) else None),
        "parity_top1_agreement": exported and _prop(exported, keys.P_PARITY_AGREEMENT),
        "parity_max_abs_error": exported and _prop(exported, keys.P_PARITY_MAX_ABS_ERR),
        "edgetpu": exported and {
            "predicted_ops_on_tpu": _prop(exported, keys.P_ETPU_PRED_TPU),
            "predicted_ops_on_cpu": _prop(exported, keys.P_ETPU_PRED_CPU),
            "predicted_first_unmapped": _prop(exported, keys.P_ETPU_FIRST_UNMAPPED),
            "compiler_status": _prop(exported, keys.P_ETPU_STATUS),
            "compiler_message": _prop(exported, keys.P_ETPU_MESSAGE),
            "ops_on_tpu": _prop(exported, keys.P_ETPU_OPS_TPU),
            "ops_on_cpu": _prop(exported, keys.P_ETPU_OPS_CPU),
        },
        "qat": qat_model and {
            "quantized_layers": _prop(qat_model, keys.P_QUANTIZED_LAYERS),
            "folded_layers": _prop(qat_model, keys.P_FOLDED_LAYERS),
            "float_layers": _prop(qat_model, keys.P_FLOAT_LAYERS),
            "float_layer_names": json.loads(_prop(qat_model, keys.P_FLOAT_LAYER_NAMES) or "[]"),
            "qat_seconds_per_step": _prop(qat_model, keys.P_QAT_SECONDS_PER_STEP),
            "float_seconds_per_step": float_stats.get("seconds_per_step"),
            "report": os.path.join(qat_model.uri, keys.QAT_REPORT_FILE),
            "search": qat_model and _prop(qat_model, "search_status") and {
                "status": _prop(qat_model, "search_status"),
                "reason": _prop(qat_model, "search_reason"),
                "trials": _prop(qat_model, "search_trials")},
        },
        "baseline_check": blessing and _prop(blessing, keys.P_BASELINE_CHECK),
        "blessing_reasons": json.loads(_prop(blessing, keys.P_REASONS)) if blessing else [],
        "eval_examples": blessing and _prop(blessing, keys.P_EVAL_EXAMPLES),
        "int8_latency_ms": blessing and _prop(blessing, keys.P_INT8_LATENCY_MS),
        "float_latency_ms": blessing and _prop(blessing, keys.P_FLOAT_LATENCY_MS),
        "int8_xnnpack": blessing and _prop(blessing, keys.P_INT8_XNNPACK),
        "float_xnnpack": blessing and _prop(blessing, keys.P_FLOAT_XNNPACK),
        "report": next((os.path.join(a.uri, keys.REPORT_FILE) for a in arts.get(
            "ModelEvaluation", []) if fileio.exists(os.path.join(a.uri, keys.REPORT_FILE))), None),
        "report_status": next((_prop(a, keys.P_REPORT_STATUS) for a in arts.get(
            "ModelEvaluation", [])), None),
        "artifacts": {
            "blessing": blessing and blessing.uri,
            "evaluation": next((a.uri for a in arts.get("ModelEvaluation", [])), None),
            "int8_model": exported and exported.uri,
        },
    }
    return summary


def report_line(s: Dict[str, Any]) -> Optional[str]:
    """Where the run report is, or, loudly, why it is not there."""
    if s.get("report"):
        return f"  report         : {s['report']}"
    if (s.get("report_status") or "").startswith("failed"):
        return f"  report         : NOT WRITTEN ({s['report_status']})"
    return None


def format_summary(s: Dict[str, Any]) -> str:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"

    def size(v):
        return "n/a" if v is None else f"{v / 1024:.1f} KiB ({v} bytes)"

    ratio = ""
    if s.get("float_tflite_bytes") and s.get("int8_tflite_bytes"):
        r = s["float_tflite_bytes"] / s["int8_tflite_bytes"]
        ratio = f"{r:.2f}x smaller" if r >= 1 else f"{1 / r:.2f}x larger (quantization parameters)"
    delta = "n/a" if s["delta_pt"] is None else f"{s['delta_pt']:+.2f}"
    latency = "n/a"
    if s.get("int8_latency_ms") and s.get("float_latency_ms"):
        latency = (f"int8 {s['int8_latency_ms']:.4g} ms vs float {s['float_latency_ms']:.4g} ms per "
                   f"example (TFLite, 1 thread, batch 1, XNNPACK; int8 "
                   f"{s['float_latency_ms'] / s['int8_latency_ms']:.2f}x the float speed)")
    if s.get("task") == "regression":
        headline = [f"  float MAE      : {s['float_mae']:.4f}   ({s.get('eval_examples')} eval "
                    "examples)", f"  int8 MAE       : {s['int8_mae']:.4f}"]
    else:
        headline = [
            f"  float accuracy : {pct(s['float_accuracy'])}   ({s.get('eval_examples')} eval "
            "examples)", f"  int8 accuracy  : {pct(s['int8_accuracy'])}",
            f"  delta          : {delta} pt (float minus int8)"]
    lines = [
        "=" * 64,
        f"tfx-qat run summary ({s.get('task', 'multiclass')} model)",
        *headline,
        f"  float TFLite   : {size(s['float_tflite_bytes'])}",
        f"  int8 TFLite    : {size(s['int8_tflite_bytes'])} {ratio}",
        f"  latency        : {latency}",
        f"  blessed        : {'yes' if s['blessed'] else 'NO'}",
    ]
    if s.get("int8_xnnpack"):
        lines.insert(-1, f"  XNNPACK        : int8 {s['int8_xnnpack'].replace('XNNPACK ', '')}"
                     + (f"; float {s['float_xnnpack'].replace('XNNPACK ', '')}"
                        if s.get("float_xnnpack") else ""))
    if (s.get("int8_latency_ms") and s.get("float_latency_ms")
            and s["int8_latency_ms"] > s["float_latency_ms"]):
        lines.insert(-1, "  WARNING        : the int8 model is SLOWER than float on this CPU (see "
                         "the XNNPACK line: ops left to TFLite's builtin kernels cost hand-offs)")
    if s.get("parity_top1_agreement") is not None:
        lines.insert(-1, f"  export parity  : Keras-QAT vs TFLite agreement "
                         f"{100 * s['parity_top1_agreement']:.2f}%, max |error| "
                         f"{s['parity_max_abs_error']:.4f}")
    e = s.get("edgetpu") or {}
    if e.get("predicted_ops_on_tpu") is not None:
        total = e["predicted_ops_on_tpu"] + e["predicted_ops_on_cpu"]
        where = e["predicted_first_unmapped"] or "no split"
        lines.insert(-1, f"  Edge TPU       : predicted {e['predicted_ops_on_tpu']}/{total} ops on "
                         f"TPU ({where}); compiler {e['compiler_status']}")
    q = s.get("qat") or {}
    if q.get("quantized_layers") is not None:
        ratio = ""
        if q.get("float_seconds_per_step"):
            ratio = (f"; step time QAT {1000 * q['qat_seconds_per_step']:.1f} ms vs float "
                     f"{1000 * q['float_seconds_per_step']:.1f} ms "
                     f"({q['qat_seconds_per_step'] / q['float_seconds_per_step']:.2f}x)")
        lines.insert(-1, f"  QAT layers     : {q['quantized_layers']} quantized, "
                         f"{q['folded_layers']} BN folded, {q['float_layers']} float{ratio}")
    if q.get("search"):
        lines.insert(-1, f"  search         : {q['search']['trials']} trial(s): "
                         f"{q['search']['reason']}")
    lines += [f"    - {r}" for r in s.get("blessing_reasons", [])]
    if s.get("baseline_check"):
        lines.append(f"  baseline       : {s['baseline_check']}")
    lines.append(f"  pushed         : {s['pushed_path'] or 'nothing pushed (model not blessed)'}")
    if report_line(s):
        lines.append(report_line(s))
    lines.append("=" * 64)
    return "\n".join(lines)
