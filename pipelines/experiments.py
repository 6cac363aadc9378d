"""Runs compared from MLMD: one row per pipeline run that ran tfx-qat, with its lineage.

A row joins, for one ``pipeline_run`` context, QuantizeTrainer (the QAT configuration, the float
model and the Examples it trained from), IntegerExporter (int8 size, Edge TPU ops), QuantEvaluator
(float and int8 headline metric, worst slice, latency, blessed) and the Pusher (where it went);
a run that failed has its failed component and the error TFX (or tfx-qat's runner) recorded.
Read through ``tfx_qat.pipelines.store`` (batched; neither TensorFlow nor TFX is imported), every
artifact property through its ``tfx_qat.quant_lib.artifacts.records`` record.
"""
from __future__ import annotations

import datetime
import json
import os
from typing import Any, Dict, List, Optional

from tfx_qat.components import keys
from tfx_qat.pipelines import store
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.artifacts.report_files import Metrics

OURS = ("QuantizeTrainer", "IntegerExporter", "QuantEvaluator")
# What the terminal table shows (all columns: --csv, --json, the DataFrame).
TABLE = ("run_id", "time", "status", "scheme", "bits", "per_tensor", "epochs", "learning_rate",
         "search_chosen_trial", "metric", "float", "int8", "delta", "worst_slice",
         "drops_beyond_noise", "int8_bytes",
         "int8_latency_ms", "float_latency_ms", "edgetpu_ops_on_tpu", "blessed", "pushed")
connect = store.connect


def runs(mlmd) -> List[Dict[str, Any]]:
    """One row per pipeline run with a tfx-qat execution, oldest first."""
    found = store.Reader(mlmd).runs(components=OURS + ("Trainer",) + store.PUSHERS)
    rows = [_row(r) for r in found if any(c in r.steps for c in OURS)]
    return sorted(rows, key=lambda r: (r["time"], r["run_id"]))


def _row(run: store.Run) -> Dict[str, Any]:
    qt, qe = run.step("QuantizeTrainer"), run.step("QuantEvaluator")
    failed = run.failed
    cfg = (qt.json_property(keys.CONFIG) or {}) if qt else {}
    q = store.record(run.output(["QuantizeTrainer"], keys.QAT_MODEL), records.QatModel)
    x = store.record(run.output(["IntegerExporter"], keys.QUANTIZED_MODEL), records.Int8Model)
    blessing = run.output(["QuantEvaluator"], keys.BLESSING)
    b = store.record(blessing, records.Blessing)
    evaluation = run.output(["QuantEvaluator"], keys.EVALUATION)
    p = store.record(run.output(store.PUSHERS, "pushed_model"), records.Pushed)
    examples, base = (qt.input(keys.EXAMPLES), qt.input(keys.BASE_MODEL)) if qt else (None, None)
    e_props = records.node_properties(examples) if examples else {}
    head = b.headline
    worst = _worst_slice(evaluation.uri) if evaluation else (None, None, {}, [])
    when = (qe or qt or failed or next(iter(run.steps.values()))).execution.create_time_since_epoch
    status = ("FAILED in " + failed.component if failed else
              "blessed" if b.blessed else "NOT blessed" if blessing else "incomplete")
    return {
        "run_id": run.context.name, "pipeline": run.pipeline,
        "time": datetime.datetime.fromtimestamp(when / 1000, datetime.timezone.utc)
        .strftime("%Y-%m-%d %H:%M:%S"),
        "status": status, "error": (failed.error or "not recorded (see the orchestrator's "
                                    "log)") if failed else None,
        "examples": examples.uri if examples else None, "examples_id": examples and examples.id,
        "examples_span": e_props.get("span"), "examples_version": e_props.get("version"),
        "trainer_model": base.uri if base else None,
        "scheme": cfg.get("scheme"), "bits": f"w{cfg['weight_bits']}a{cfg['activation_bits']}"
        if "weight_bits" in cfg else None, "per_tensor": cfg.get("per_tensor"),
        "epochs": cfg.get("epochs"), "learning_rate": cfg.get("learning_rate"),
        "float_layers": q.float_layer_names, "float_fallback_layers": q.float_fallback_layers,
        "int8_weight_layers": q.int8_weight_layers, "search_status": q.search_status,
        "search_chosen_trial": q.search_chosen_trial,
        "metric": head["metric"], "float": head["float"], "int8": head["int8"],
        "delta": head["delta"], "worst_slice": worst[0], "worst_slice_delta": worst[1],
        "int8_bytes": x.int8_tflite_bytes, "float_bytes": x.float_tflite_bytes,
        "int8_latency_ms": b.int8_latency_ms, "float_latency_ms": b.float_latency_ms,
        "latency_runtime": b.latency_runtime, "tf_int8_latency_ms": b.tf_int8_latency_ms,
        "tf_float_latency_ms": b.tf_float_latency_ms, "latency_cpu": b.latency_cpu,
        "latency_int8_dot": b.latency_int8_dot, "speed_gate": b.speed_gate,
        "edgetpu_ops_on_tpu": x.edgetpu_ops_on_tpu if x.edgetpu_ops_on_tpu is not None
        else x.edgetpu_predicted_ops_on_tpu,
        "blessed": b.blessed, "pushed": bool(p.pushed),
        "pushed_to": p.pushed_destination if p.pushed else None,
        "report": os.path.join(evaluation.uri, keys.REPORT_FILE) if evaluation else None,
        "slice_deltas": worst[2] if evaluation else {},
        "drops_beyond_noise": worst[3] if evaluation else [],
    }


def _worst_slice(uri: str):
    """(slice, int8 - float of its headline, all slices' deltas, the classes and slices whose
    paired 95 % interval lies below zero) from QuantEvaluator's metrics.json: configured slices,
    else classes; higher MAE counts as worse."""
    m = store.read_json(uri, keys.METRICS_FILE)
    if m is None:
        return None, None, {}, []
    deltas, beyond = {}, []
    for name, s in (Metrics.load(m).slices or {}).items():
        if name == "overall":
            for c, v in (s.per_class_accuracy or {}).items():
                deltas[f"class {c}"] = v.accuracy["int8"] - v.accuracy["float"]
                if v.paired is not None and v.paired.harmed:
                    beyond.append(f"class {c}")
        elif s.accuracy is not None:
            deltas[name] = s.accuracy["int8"] - s.accuracy["float"]
            if s.paired is not None and s.paired.harmed:
                beyond.append(name)
        elif s.mae is not None:
            deltas[name] = -(s.mae["int8"] - s.mae["float"])
    configured = {k: v for k, v in deltas.items() if not k.startswith("class ")}
    pool = configured or deltas
    if not pool:
        return None, None, deltas, beyond
    name = min(pool, key=pool.get)
    return name, pool[name], deltas, beyond


def frame(root: Optional[str] = None, mlmd_config: Optional[str] = None):
    """The runs as a pandas DataFrame (one row per run, every column of ``runs``)."""
    import pandas as pd
    return pd.DataFrame(runs(connect(root, mlmd_config)))


def diff(rows: List[Dict[str, Any]], a: str, b: str) -> Dict[str, tuple]:
    """Fields whose values differ between runs ``a`` and ``b`` (run id, or its 1-based row)."""
    ra, rb = _pick(rows, a), _pick(rows, b)
    skip = {"run_id", "time", "report", "slice_deltas"}
    return {k: (ra[k], rb[k]) for k in ra if k not in skip and ra[k] != rb[k]}


def _pick(rows, key: str) -> Dict[str, Any]:
    for i, r in enumerate(rows, 1):
        if r["run_id"] == key or str(i) == key:
            return r
    raise ValueError(f"no run {key!r}; runs: " + ", ".join(f"{i} = {r['run_id']}"
                                                           for i, r in enumerate(rows, 1)))


def cell_text(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ",".join(map(str, v)) or "-"
    return str(v)


def table(rows: List[Dict[str, Any]], columns=TABLE) -> str:
    """A plain-text table, one line per run, numbered for --diff."""
    cells = [["#"] + list(columns)] + [[str(i)] + [cell_text(r.get(c)) for c in columns]
                                      for i, r in enumerate(rows, 1)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    errors = [f"  {i}: {r['status']}: {r['error']}" for i, r in enumerate(rows, 1)
              if r.get("error")]
    return "\n".join(lines + (["errors:"] + errors if errors else []))


def to_csv(rows: List[Dict[str, Any]]) -> str:
    import csv
    import io as _io
    buf = _io.StringIO()
    columns = [k for k in rows[0] if k != "slice_deltas"] if rows else list(TABLE)
    w = csv.DictWriter(buf, columns, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})
    return buf.getvalue()


def pareto(rows: List[Dict[str, Any]]) -> List[int]:
    """Indices of the runs no other run beats on both int8 size and int8 headline drop (the
    drop: float - int8 accuracy, or int8 - float MAE)."""
    pts = [(i, r["int8_bytes"], -r["delta"] if r["metric"] == "accuracy" else r["delta"])
           for i, r in enumerate(rows) if r["int8_bytes"] and r["delta"] is not None]
    return [i for i, s, d in pts if not any(
        s2 <= s and d2 <= d and (s2, d2) != (s, d) for _, s2, d2 in pts)]


def html(rows: List[Dict[str, Any]], title: str = "tfx-qat experiments") -> str:
    """A self-contained page: the table (each run linking to its run report), the headline
    metric float and int8 over time, int8 size and latency against the drop with the Pareto
    front marked, and per-slice deltas across runs."""
    import html as h
    from tfx_qat.quant_lib.reports.report import CSS, figure_png, pyplot
    plt = pyplot()
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{h.escape(title)}</title>"
           f"<style>{CSS}</style></head><body><h1>{h.escape(title)}</h1>",
           f"<p>{len(rows)} run(s), oldest first.</p>"]
    head = "".join(f"<th class='l'>{h.escape(c)}</th>" for c in ("#",) + TABLE)
    body = ""
    for i, r in enumerate(rows, 1):
        cells = [cell_text(r.get(c)) for c in TABLE]
        if r.get("report"):
            cells[0] = f"<a href='file://{h.escape(r['report'])}'>{h.escape(cells[0])}</a>"
        else:
            cells[0] = h.escape(cells[0])
        body += (f"<tr><td>{i}</td><td class='l'>{cells[0]}</td>" + "".join(
            f"<td class='l'>{h.escape(c)}</td>" for c in cells[1:]) + "</tr>")
    out.append(f'<h2 id="runs">Runs</h2><div style="overflow-x:auto"><table><tr>{head}</tr>'
               f'{body}</table></div>')
    errors = [(i, r) for i, r in enumerate(rows, 1) if r["error"]]
    if errors:
        out.append("<ul>" + "".join(f"<li class='bad'>{i}: {h.escape(r['status'])}: "
                                    f"{h.escape(r['error'])}</li>" for i, r in errors) + "</ul>")
    scored = [(i, r) for i, r in enumerate(rows, 1) if r["float"] is not None]
    if scored:
        metric = scored[0][1]["metric"]
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.plot([i for i, _ in scored], [r["float"] for _, r in scored], "o-", label="float")
        ax.plot([i for i, _ in scored], [r["int8"] for _, r in scored], "s-", label="int8")
        ax.set_xlabel("run # (time order)")
        ax.set_ylabel(metric)
        ax.legend()
        out.append(f'<h2 id="over-time">{h.escape(metric)} over runs</h2>' + figure_png(fig))
        front = set(pareto(rows))
        for key, unit in (("int8_bytes", "int8 TFLite bytes"), ("int8_latency_ms",
                                                                 "int8 latency (ms)")):
            pts = [(i, r) for i, r in enumerate(rows) if r[key] and r["delta"] is not None]
            if not pts:
                continue
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for i, r in pts:
                drop = -100 * r["delta"] if r["metric"] == "accuracy" else r["delta"]
                on = i in front and key == "int8_bytes"
                ax.scatter(r[key], drop, c="#c33" if on else "#37a", s=40 if on else 20)
                ax.annotate(str(i + 1), (r[key], drop), fontsize=8)
            ax.set_xlabel(unit)
            ax.set_ylabel(f"{metric} drop, float minus int8"
                          + (" (pt)" if metric == "accuracy" else " (int8 - float)"))
            out.append(f'<h2 id="{key}">{h.escape(unit)} vs drop'
                       + (" (red: Pareto front)" if key == "int8_bytes" else "") + "</h2>"
                       + figure_png(fig))
    slices = sorted({s for r in rows for s in (r.get("slice_deltas") or {})})
    if slices:
        def delta(r, s):
            d = r.get("slice_deltas") or {}
            return cell_text(100 * d[s]) if s in d else "-"
        cells = "".join(f"<tr><td class='l'>{h.escape(s)}</td>" + "".join(
            f"<td>{delta(r, s)}</td>" for r in rows) + "</tr>" for s in slices)
        out.append('<h2 id="slices">Per-slice int8 - float (pt, MAE: -) by run</h2><table><tr>'
                   "<th class='l'>slice</th>" + "".join(f"<th>{i}</th>" for i in
                                                         range(1, len(rows) + 1))
                   + f"</tr>{cells}</table>")
    out.append("</body></html>")
    return "\n".join(out)


def main_args(args) -> int:
    """``python -m tfx_qat.pipelines.cli experiments``: table, --csv, --json, --diff, --html."""
    rows = runs(connect(args.root, args.mlmd_config))
    if args.diff:
        changed = diff(rows, *args.diff)
        print(f"{len(changed)} field(s) differ between {args.diff[0]} and {args.diff[1]}:")
        for k, (va, vb) in changed.items():
            print(f"  {k:22s} {cell_text(va):>24s} -> {cell_text(vb)}")
        return 0
    if args.html:
        with open(args.html, "w") as f:
            f.write(html(rows))
        print(f"experiments page written to {args.html} ({len(rows)} runs)")
    if args.csv:
        print(to_csv(rows), end="")
    elif args.json:
        print(json.dumps(rows, indent=2))
    elif not args.html:
        print(table(rows) if rows else "no tfx-qat run recorded in this MLMD store")
    return 0
