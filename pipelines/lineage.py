"""Lineage of pushed int8 models, walked through MLMD events (not guessed from paths).

PushedModel <- Pusher <- (int8 Model <- IntegerExporter <- (QAT Model <- QuantizeTrainer),
float Model <- Trainer) and (ModelBlessing <- QuantEvaluator).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from tfx_qat.components import keys
from tfx_qat.pipelines import store
from tfx_qat.quant_lib.artifacts import records as rec_types


def _config(step: store.Step) -> Optional[dict]:
    return step.json_property(keys.CONFIG)


def pushed_model_lineage(metadata_path: str) -> List[Dict[str, Any]]:
    """One record per pushed model (oldest first): push, blessing, export, QAT and float origin."""
    g = store.Reader(store.connect(metadata_path))
    out = []
    for pushed in g.artifacts("PushedModel"):
        p = store.record(pushed, rec_types.Pushed)
        if not p.pushed:
            continue
        push = g.producer(pushed.id)
        int8 = push.input("model")
        export = g.producer(int8.id)
        qat = export.input(keys.MODEL)
        qat_step = g.producer(qat.id)
        out.append({
            "pushed": {**store.artifact_view(pushed), "destination": p.pushed_destination,
                       "version": p.pushed_version, "sha256": p.pushed_sha256,
                       "execution_id": push.execution.id},
            "evaluation": _evaluation_view(g, push.input("model_blessing")),
            "export": _export_view(int8, export),
            "qat": _qat_view(qat, qat_step),
            "float_baseline": _float_view(g, qat_step),
        })
    return out


def _evaluation_view(g: store.Reader, blessing) -> Dict[str, Any]:
    b = store.record(blessing, rec_types.Blessing)
    step = g.producer(blessing.id)
    head = b.headline
    acc = head["metric"] == "accuracy"
    return {
        "component": step.component, "execution_id": step.execution.id,
        "blessing": store.artifact_view(blessing), "blessed": bool(b.blessed),
        "task": b.task or "multiclass",
        "float_mae": b.float_mae, "int8_mae": b.int8_mae,
        "float_accuracy": head["float"] if acc else None,
        "int8_accuracy": head["int8"] if acc else None,
        "delta_pt": -100.0 * head["delta"] if acc else None,
        "eval_examples": b.eval_examples,
        "reasons": b.blessing_reasons or [],
        "baseline_check": b.baseline_check,
        "evaluated_int8_sha256": b.int8_sha256,
        "evaluated_model_id": b.current_model_id,
        "config": _config(step),
    }


def _export_view(int8, step: store.Step) -> Dict[str, Any]:
    e = store.record(int8, rec_types.Int8Model)
    return {
        "component": step.component, "execution_id": step.execution.id,
        "int8_model": store.artifact_view(int8),
        "validated": bool(e.integer_validated),
        "int8_tflite_bytes": e.int8_tflite_bytes,
        "float_tflite_bytes": e.float_tflite_bytes,
        "parity_top1_agreement": e.parity_top1_agreement,
        "parity_max_abs_error": e.parity_max_abs_error,
        "op_counts": e.op_counts,
        "edgetpu": {"compiler_status": e.edgetpu_compiler_status,
                    "predicted_ops_on_tpu": e.edgetpu_predicted_ops_on_tpu,
                    "predicted_ops_on_cpu": e.edgetpu_predicted_ops_on_cpu,
                    "ops_on_tpu": e.edgetpu_ops_on_tpu, "ops_on_cpu": e.edgetpu_ops_on_cpu},
        "config": _config(step),
    }


def _qat_view(qat, step: store.Step) -> Dict[str, Any]:
    q = store.record(qat, rec_types.QatModel)
    return {
        "component": step.component, "execution_id": step.execution.id,
        "qat_model": store.artifact_view(qat),
        "int8_method": q.int8_method or "qat",
        "quantized_layers": q.quantized_layers,
        "folded_layers": q.folded_layers,
        "float_layers": q.float_layers,
        "seconds_per_step": q.qat_seconds_per_step,
        "config": _config(step),
        "report": store.read_json(qat.uri, keys.QAT_REPORT_FILE),
        "search": _search(q),
    }


def _float_view(g: store.Reader, qat_step: store.Step) -> Dict[str, Any]:
    fm = qat_step.input(keys.BASE_MODEL)
    if fm is None:
        return {"note": "QuantizeTrainer trained its own float model (no base_model input); "
                        "stored in its artifact"}
    trainer = g.producer(fm.id)
    return {
        "component": trainer.component, "execution_id": trainer.execution.id,
        "float_model": store.artifact_view(fm),
        "custom_config": trainer.json_property("custom_config"),
        "examples": [store.artifact_view(x) for x in trainer.inputs.get("examples", [])],
    }


def _search(q) -> Optional[Dict[str, Any]]:
    """The accuracy-aware search as QuantizeTrainer recorded it (a records.QatModel)."""
    if q.search_status is None:
        return None
    return {"status": q.search_status, "reason": q.search_reason,
            "validation_split": q.search_validation_split,
            "budget_pt": q.search_budget_pt, "chosen": q.search_chosen_trial,
            "resolution_pt": q.search_resolution_pt, "warning": q.search_warning,
            "metric": q.search_metric or "accuracy",
            "trials": [dict(zip(("index", "move", "change", "accuracy", "int8_bytes",
                                 "within_budget"), row)) for row in q.search_trial_table or []],
            "float_fallback_layers": q.float_fallback_layers or [],
            "int8_weight_layers": q.int8_weight_layers or []}


def format_lineage(records: List[Dict[str, Any]]) -> str:
    if not records:
        return "no pushed model recorded in this MLMD database (nothing was blessed and pushed)"
    lines = []
    for r in records:
        ev, ex, q, fb = r["evaluation"], r["export"], r["qat"], r["float_baseline"]
        lines += [
            f"pushed model {r['pushed']['version']} -> {r['pushed']['destination']}",
            f"  QuantEvaluator (execution {ev['execution_id']}): blessed={ev['blessed']}; "
            + (f"MAE float {ev['float_mae']:.4f} vs int8 {ev['int8_mae']:.4f} "
               if ev["float_accuracy"] is None else
               f"float {100 * ev['float_accuracy']:.2f}% vs int8 {100 * ev['int8_accuracy']:.2f}% "
               f"(delta {ev['delta_pt']:+.2f} pt) ")
            + f"on {ev['eval_examples']} examples; baseline: {ev['baseline_check']}",
            *[f"      - {reason}" for reason in ev["reasons"]],
            f"    evaluated sha256 {ev['evaluated_int8_sha256']}; pushed sha256 "
            f"{r['pushed']['sha256'] or 'not recorded (stock Pusher)'}",
            f"  IntegerExporter (execution {ex['execution_id']}): validated={ex['validated']}; "
            f"int8 {ex['int8_tflite_bytes']} B vs float {ex['float_tflite_bytes']} B; parity "
            f"top-1 {ex['parity_top1_agreement']}; Edge TPU compiler "
            f"{ex['edgetpu']['compiler_status']}, predicted on TPU "
            f"{ex['edgetpu']['predicted_ops_on_tpu']} ops, on CPU "
            f"{ex['edgetpu']['predicted_ops_on_cpu']}",
            f"    int8 model: {ex['int8_model']['uri']}",
            f"  QuantizeTrainer (execution {q['execution_id']}): {q['quantized_layers']} quantized, "
            f"{q['folded_layers']} folded, {q['float_layers']} float layers; scheme "
            f"{(q['config'] or {}).get('scheme')}, epochs {(q['config'] or {}).get('epochs')}, "
            f"lr {(q['config'] or {}).get('learning_rate')}",
            f"    QAT model: {q['qat_model']['uri']}" if q["int8_method"] == "qat" else
            "    int8 method: post-training quantization of the float model (kept by the search; "
            f"no QAT): {q['qat_model']['uri']}",
        ]
        if q.get("search"):
            sr = q["search"]
            lines.append(f"    search ({sr['status']}, budget {sr['budget_pt']} "
                         f"{'% MAE' if sr.get('metric') == 'mae' else 'pt'} on "
                         f"{sr['validation_split']!r}): {sr['reason']}")
            if sr.get("warning"):
                lines.append(f"    search WARNING: {sr['warning']}")
            mae = sr.get("metric") == "mae"
            lines += [f"      trial {t['index']} {t['move']}: {t['change']} -> val "
                      + (f"MAE {t['accuracy']:.4g}" if mae else f"top-1 {100 * t['accuracy']:.2f}%")
                      + f", {t['int8_bytes']} B"
                      + (" (chosen)" if t["index"] == sr["chosen"] else "")
                      for t in sr["trials"]]
        if "float_model" in fb:
            cc = fb["custom_config"] or {}
            lines += [f"  float baseline: {fb['component']} (execution {fb['execution_id']}), "
                      f"epochs {cc.get('epochs')}, lr {cc.get('learning_rate')}",
                      f"    float model: {fb['float_model']['uri']}"]
        else:
            lines.append(f"  float baseline: {fb['note']}")
        lines.append("")
    return "\n".join(lines)
