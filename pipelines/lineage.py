"""Lineage of pushed int8 models, walked through MLMD events (not guessed from paths).

PushedModel <- Pusher <- (int8 Model <- IntegerExporter <- (QAT Model <- QuantizeTrainer),
float Model <- Trainer) and (ModelBlessing <- QuantEvaluator).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.io import fileio
from tfx.orchestration import metadata

from components import keys
from components.utils import mlmd_properties, read_record
from quant_lib import records as rec_types

_IN = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
_OUT = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


def _key(event) -> Optional[str]:
    return next((s.key for s in event.path.steps if s.HasField("key")), None)


class _Graph:
    def __init__(self, store):
        self.store = store
        self.exec_types = {t.id: t.name for t in store.get_execution_types()}

    def producer(self, artifact_id: int):
        """The execution that actually ran to produce the artifact (not a cache hit of it)."""
        events = [e for e in self.store.get_events_by_artifact_ids([artifact_id]) if e.type in _OUT]
        execs = self.store.get_executions_by_id([e.execution_id for e in events])
        done = [x for x in execs if x.last_known_state == metadata_store_pb2.Execution.COMPLETE]
        return min(done or execs, key=lambda x: x.id) if (done or execs) else None

    def _by_key(self, execution_id: int, kinds) -> Dict[str, list]:
        events = [e for e in self.store.get_events_by_execution_ids([execution_id])
                  if e.type in kinds]
        arts = {a.id: a for a in self.store.get_artifacts_by_id([e.artifact_id for e in events])}
        out: Dict[str, list] = {}
        for e in events:
            out.setdefault(_key(e), []).append(arts[e.artifact_id])
        return out

    def inputs(self, execution_id: int) -> Dict[str, list]:
        return self._by_key(execution_id, _IN)

    def component(self, execution) -> str:
        return self.exec_types[execution.type_id].rsplit(".", 1)[-1]


def _config(execution) -> Optional[dict]:
    raw = mlmd_properties(execution).get(keys.CONFIG)
    return json.loads(raw) if raw else None


def _read_json(uri: str, name: str) -> Optional[dict]:
    path = os.path.join(uri, name)
    if not fileio.exists(path):
        return None
    with fileio.open(path) as f:
        return json.loads(f.read())


def _artifact(a) -> Dict[str, Any]:
    return {"id": a.id, "uri": a.uri, "state": metadata_store_pb2.Artifact.State.Name(a.state)}


def pushed_model_lineage(metadata_path: str) -> List[Dict[str, Any]]:
    """One record per pushed model (oldest first): push, blessing, export, QAT and float origin."""
    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(metadata_path))
    g = _Graph(store)
    out = []
    for pushed in store.get_artifacts_by_type("PushedModel"):
        p = read_record(pushed, rec_types.Pushed)
        if not p.pushed:
            continue
        push_exec = g.producer(pushed.id)
        push_in = g.inputs(push_exec.id)
        int8 = push_in["model"][0]
        rec: Dict[str, Any] = {
            "pushed": {**_artifact(pushed), "destination": p.pushed_destination,
                       "version": p.pushed_version, "sha256": p.pushed_sha256,
                       "execution_id": push_exec.id},
            "evaluation": _evaluation_view(g, push_in["model_blessing"][0]),
        }
        export_exec = g.producer(int8.id)
        rec["export"] = _export_view(g, int8, export_exec)
        qat = g.inputs(export_exec.id)[keys.MODEL][0]
        qat_exec = g.producer(qat.id)
        rec["qat"] = _qat_view(g, qat, qat_exec)
        rec["float_baseline"] = _float_view(g, qat_exec)
        out.append(rec)
    return out


def _evaluation_view(g: "_Graph", blessing) -> Dict[str, Any]:
    b = read_record(blessing, rec_types.Blessing)
    eval_exec = g.producer(blessing.id)
    head = b.headline
    acc = head["metric"] == "accuracy"
    return {
        "component": g.component(eval_exec), "execution_id": eval_exec.id,
        "blessing": _artifact(blessing), "blessed": bool(b.blessed),
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
        "config": _config(eval_exec),
    }


def _export_view(g: "_Graph", int8, export_exec) -> Dict[str, Any]:
    e = read_record(int8, rec_types.Int8Model)
    return {
        "component": g.component(export_exec), "execution_id": export_exec.id,
        "int8_model": _artifact(int8),
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
        "config": _config(export_exec),
    }


def _qat_view(g: "_Graph", qat, qat_exec) -> Dict[str, Any]:
    q = read_record(qat, rec_types.QatModel)
    return {
        "component": g.component(qat_exec), "execution_id": qat_exec.id,
        "qat_model": _artifact(qat),
        "int8_method": q.int8_method or "qat",
        "quantized_layers": q.quantized_layers,
        "folded_layers": q.folded_layers,
        "float_layers": q.float_layers,
        "seconds_per_step": q.qat_seconds_per_step,
        "config": _config(qat_exec),
        "report": _read_json(qat.uri, keys.QAT_REPORT_FILE),
        "search": _search(q),
    }


def _float_view(g: "_Graph", qat_exec) -> Dict[str, Any]:
    float_models = g.inputs(qat_exec.id).get(keys.BASE_MODEL) or []
    if not float_models:
        return {"note": "QuantizeTrainer trained its own float model (no base_model input); "
                        "stored in its artifact"}
    fm = float_models[0]
    trainer_exec = g.producer(fm.id)
    tp = mlmd_properties(trainer_exec)
    return {
        "component": g.component(trainer_exec), "execution_id": trainer_exec.id,
        "float_model": _artifact(fm),
        "custom_config": json.loads(tp["custom_config"]) if tp.get("custom_config") else None,
        "examples": [_artifact(x) for x in g.inputs(trainer_exec.id).get("examples", [])],
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
