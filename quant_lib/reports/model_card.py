"""The model card pushed beside the int8 model: which data, which float model, which gate and
what it measured, so the app team knows what the int8 file was judged against without MLMD.
Built from what QuantEvaluator measured (``report_files.Metrics``) and what IntegerExporter
recorded (``records.Int8Model``); JSON for tools, Markdown for people."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Optional

from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.artifacts.report_files import Metrics
from tfx_qat.quant_lib.evaluation.metrics import OVERALL, slice_name

JSON_FILE = "model_card.json"
MD_FILE = "model_card.md"


@dataclasses.dataclass(frozen=True)
class Lineage:
    """Where the judged model came from: MLMD artifact ids and uris, the run that judged it."""

    pipeline: Optional[str]
    run_id: Optional[str]
    evaluator_execution: Optional[str]
    examples: Dict[str, Any]      # uri, id, span, version, split sizes
    float_model: Dict[str, Any]   # uri, id
    int8_model: Dict[str, Any]    # uri, id


def build(metrics: Metrics, int8: records.Int8Model, lineage: Lineage) -> Dict[str, Any]:
    """The card as a JSON-able dict."""
    headline = "mae" if metrics.task == "regression" else "accuracy"
    slices = {name: {"examples": s.examples, "float": getattr(s, headline)["float"],
                     "int8": getattr(s, headline)["int8"]} for name, s in metrics.slices.items()}
    names = int8.labels or []
    overall = (metrics.slices or {}).get(slice_name(OVERALL))
    per_class = {names[int(c)] if int(c) < len(names) else c: v.to_json() for c, v in
                 ((overall and overall.per_class_accuracy) or {}).items()}
    return {
        "model": {"name": lineage.pipeline, "version": lineage.run_id, "task": metrics.task,
                  "file": "tflite", "sha256": metrics.int8_sha256,
                  "int8_bytes": int8.int8_tflite_bytes, "float_tflite_bytes": int8.float_tflite_bytes,
                  "activations": int8.activations, "inputs": int8.input_contract,
                  "labels": int8.labels, "labels_source": int8.labels_source,
                  "metadata": {"writer": int8.metadata_writer, "limits": int8.metadata_limits,
                               "bytes": int8.metadata_bytes}},
        "data": {"examples": lineage.examples, "eval_split": metrics.eval_split,
                 "eval_examples": metrics.eval_examples},
        "evaluation": {"headline_metric": headline, "slices": slices, "per_class": per_class,
                       "top1_agreement": metrics.top1_agreement,
                       "eval_config": metrics.eval_config},
        "blessing": {"blessed": metrics.blessed, "reasons": metrics.reasons,
                     "baseline": metrics.baseline},
        "latency_ms": {"int8": metrics.int8_latency_ms,
                       "float": metrics.float_latency_ms,
                       "runtime": metrics.latency_runtime,
                       "tf_int8": metrics.tf_int8_latency_ms,
                       "tf_float": metrics.tf_float_latency_ms,
                       "tf_runtime": metrics.tf_runtime,
                       "cpu": metrics.latency_cpu,
                       "speed_gate": metrics.speed_gate,
                       "int8_xnnpack": metrics.int8_xnnpack,
                       "float_xnnpack": metrics.float_xnnpack,
                       "protocol": "invoke(), 1 thread, batch 1, XNNPACK, interleaved passes"},
        "edgetpu": {k: v for k, v in int8.to_properties().items() if k.startswith("edgetpu_")},
        "lineage": {"pipeline": lineage.pipeline, "run_id": lineage.run_id,
                    "evaluator_execution": lineage.evaluator_execution,
                    "examples_id": lineage.examples.get("id"),
                    "float_model": lineage.float_model, "int8_model": lineage.int8_model},
    }


def _num(v, headline: str) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if headline == "mae" else f"{100 * v:.2f}%"


def to_markdown(card: Dict[str, Any]) -> str:
    m, d, e, b = card["model"], card["data"], card["evaluation"], card["blessing"]
    h = e["headline_metric"]
    lines = [f"# Model card: {m['name']} ({m['version']})", "",
             f"- task: {m['task']}; int8 file `tflite` ({m['int8_bytes']} bytes, sha256 "
             f"`{m['sha256']}`), float TFLite reference {m['float_tflite_bytes'] or '-'} bytes",
             f"- inputs: " + "; ".join(f"`{c['name']}` {c['dtype']} {c['shape']} (scale "
                                        f"{c['scale']:.6g}, zero point {c['zero_point']}"
                                        + (f"; feed {c['client_feeds']}" if c.get("client_feeds")
                                           else "") + ")"
                                        for c in m["inputs"] or []),
             f"- labels ({m['labels_source']}): {', '.join(m['labels'] or []) or '-'}",
             f"- TFLite metadata: {m['metadata']['writer']} ({m['metadata'].get('bytes')} bytes "
             "of the file)"
             + "".join(f"\n  - limit: {x}" for x in m["metadata"]["limits"] or []), "",
             "## Data", "",
             f"- Examples `{d['examples'].get('uri')}` (MLMD id {d['examples'].get('id')}); "
             f"splits: " + ", ".join(f"{k} {v}" for k, v in
                                    (d["examples"].get("split_sizes") or {}).items()),
             f"- judged on split `{d['eval_split']}`: {d['eval_examples']} examples", "",
             f"## Float vs int8 ({h})", "", "| slice | examples | float | int8 |",
             "|---|---|---|---|"]
    for name, s in e["slices"].items():
        lines.append(f"| {name} | {s['examples']} | {_num(s['float'], h)} | {_num(s['int8'], h)} |")
    if e["per_class"]:
        lines += ["", "Per class (overall slice), with the paired 95 % interval of int8 minus "
                  "float (from the examples the two disagree on):", "",
                  "| class | examples | float | int8 | int8 - float (pt) | paired 95 % interval |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {c} | {v['support']} | {_num(v['float'], h)} | {_num(v['int8'], h)} | "
                  f"{100 * (v['int8'] - v['float']):+.2f} | {_interval(v.get('paired'))} |"
                  for c, v in e["per_class"].items()]
    lat = card["latency_ms"]
    lines += ["", "## The gate", "", f"**{'BLESSED' if b['blessed'] else 'NOT BLESSED'}**", ""]
    lines += [f"- {r}" for r in b["reasons"]]
    lines += ["", "The tfma.EvalConfig that decided:", "", "```json",
              json.dumps(e["eval_config"], indent=1, sort_keys=True), "```", "",
              "## Latency", "",
              f"On {lat['runtime']}: int8 {lat['int8']} ms, float {lat['float']} ms per example "
              f"({lat['protocol']}); int8: {lat['int8_xnnpack']}; float: {lat['float_xnnpack']}",
              "", f"On {lat['tf_runtime']}: int8 {lat['tf_int8']} ms, float {lat['tf_float']} ms.",
              "", f"Measured on the pipeline worker's CPU: {lat.get('cpu')}. Without int8 "
              "dot-product instructions (VNNI / dotprod) int8 is no faster than float; the app's "
              "device decides its own speed.", "",
              "## Edge TPU", ""]
    lines += [f"- {k}: {v}" for k, v in card["edgetpu"].items()] or ["- not analyzed"]
    ln = card["lineage"]
    lines += ["", "## Lineage (MLMD)", "",
              f"- pipeline `{ln['pipeline']}`, run `{ln['run_id']}`, QuantEvaluator execution "
              f"{ln['evaluator_execution']}",
              f"- Examples id {ln['examples_id']}; float model id {ln['float_model'].get('id')} "
              f"(`{ln['float_model'].get('uri')}`); int8 model id {ln['int8_model'].get('id')} "
              f"(`{ln['int8_model'].get('uri')}`)", ""]
    return "\n".join(lines)


def _interval(p) -> str:
    if not p:
        return "-"
    lo, hi = p["interval_pt"]
    return f"[{lo:+.2f}, {hi:+.2f}] pt" + (" **drop beyond noise**" if hi < 0 else "")
