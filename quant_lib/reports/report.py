"""Self-contained HTML run report (plots embedded as PNG): what one float-vs-int8 run measured.

Inputs are the JSON documents the components already write (QuantEvaluator's metrics, the
IntegerExporter report, which carries QuantizeTrainer's per-layer report), so the report can be
rebuilt from artifacts alone: ``python -m tfx_qat.quant_lib.reports.report METRICS_JSON EXPORT_REPORT_JSON OUT``.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import sys
from typing import Any, Dict, List, Optional

from tfx_qat.quant_lib.artifacts.report_files import (ExportReport, Metrics, OpProfiles, QatReport,
                                                      SearchReport)

SECTIONS = ("headline", "blessing", "confusion", "per-class", "layers", "export", "size-latency",
            "op-profile")
BINARY_SECTIONS = ("curves",)  # besides the classification ones
REGRESSION_SECTIONS = ("headline", "blessing", "errors", "layers", "export", "size-latency",
                       "op-profile")
CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}.ok{color:#070}.bad{color:#b00}
h2{border-bottom:1px solid #ddd;margin-top:1.6em}img{max-width:100%}"""


def figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return ('<img alt="plot" src="data:image/png;base64,'
            + base64.b64encode(buf.getvalue()).decode() + '">')


def _table(header: List[str], rows: List[List[Any]], left: int = 1) -> str:
    e = html.escape
    h = "".join(f'<th class="{"l" if i < left else ""}">{e(str(c))}</th>'
                for i, c in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{e(_fmt(c))}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _per_class(pc) -> str:
    classes = sorted(pc, key=lambda c: int(c) if str(c).isdigit() else str(c))
    deltas = [100 * (pc[c].accuracy["int8"] - pc[c].accuracy["float"]) for c in classes]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar([str(c) for c in classes], deltas, color=["#2a7" if d >= 0 else "#c33" for d in deltas])
    ax.axhline(0, color="#444", lw=.8)
    ax.set_xlabel("class")
    ax.set_ylabel("int8 - float (pt)")
    ax.set_title("Per-class accuracy delta")
    return ('<h2 id="per-class">Per-class accuracy</h2>' + figure_png(fig) +
            "<p>Paired 95 % interval: from the examples float and int8 disagree on, in that "
            "class (one example = 100 / support pt). An interval wholly below zero is a drop "
            "beyond noise; the guard (EvalConfig.max_class_drop_pt) blocks where it shows "
            "one beyond its tolerance.</p>" + _table(
                ["class", "support", "float", "int8", "delta (pt)", "paired 95 % interval (pt)",
                 "float-only / int8-only right", "drop beyond noise"],
                [[c, pc[c].support, pc[c].accuracy["float"], pc[c].accuracy["int8"], f"{d:+.2f}",
                  *_paired_cells(pc[c].paired)] for c, d in zip(classes, deltas)]))


def _paired_cells(p) -> List[str]:
    if not p:
        return ["-", "-", "-"]
    lo, hi = p.interval_pt
    return [f"[{lo:+.2f}, {hi:+.2f}]", f"{p.float_only} / {p.int8_only}",
            "yes" if p.harmed else ""]


def _confusion(cm: Dict[str, List[List[int]]]) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    f, q = np.array(cm["float"]), np.array(cm["int8"])
    for ax, m, title, cmap in ((axes[0], f, "float", "Blues"), (axes[1], q, "int8", "Blues"),
                               (axes[2], q - f, "int8 - float", "RdBu")):
        lim = max(1, np.abs(m).max())
        im = ax.imshow(m, cmap=cmap, vmin=-lim if cmap == "RdBu" else 0, vmax=lim)
        ax.set_title(title)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        fig.colorbar(im, ax=ax, fraction=0.046)
    return figure_png(fig)


def _bars(labels, values, title, unit, colors=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3))
    bars = ax.bar(labels, values, color=colors or ["#888", "#2a7"])
    ax.set_title(title)
    ax.set_ylabel(unit)
    for b, v in zip(bars, values):
        ax.annotate(_fmt(v), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                    va="bottom")
    return figure_png(fig)


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _curves(points) -> str:
    """ROC and precision-recall curves of both models from the sampled (label, float, int8)."""
    import numpy as np
    plt = pyplot()
    p = np.asarray(points, np.float64)
    y = p[:, 0] > 0.5
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4))
    for col, name in ((1, "float"), (2, "int8")):
        order = np.argsort(-p[:, col], kind="stable")
        tp = np.cumsum(y[order])
        fp = np.cumsum(~y[order])
        tpr, fpr = tp / max(1, y.sum()), fp / max(1, (~y).sum())
        precision = tp / np.arange(1, len(order) + 1)
        roc.plot(np.r_[0, fpr], np.r_[0, tpr], label=name, ls="-" if col == 1 else "--")
        pr.plot(tpr, precision, label=name, ls="-" if col == 1 else "--")
    roc.plot([0, 1], [0, 1], color="#bbb", lw=.8)
    roc.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    pr.set(title="Precision-recall", xlabel="recall", ylabel="precision")
    roc.legend()
    pr.legend()
    return figure_png(fig)


def _errors(points) -> str:
    """Error histograms and predicted-vs-true of both models from the sampled points."""
    import numpy as np
    plt = pyplot()
    p = np.asarray(points, np.float64)
    fig, (hist, scatter) = plt.subplots(1, 2, figsize=(10, 4))
    errs = {"float": p[:, 1] - p[:, 0], "int8": p[:, 2] - p[:, 0]}
    bins = np.histogram_bin_edges(np.concatenate(list(errs.values())), bins=30)
    for name, err in errs.items():
        hist.hist(err, bins=bins, alpha=.5, label=name)
    hist.set(title="Prediction error (predicted - true)", xlabel="error", ylabel="examples")
    hist.legend()
    scatter.scatter(p[:, 0], p[:, 1], s=8, label="float", alpha=.6)
    scatter.scatter(p[:, 0], p[:, 2], s=8, label="int8", alpha=.6, marker="x")
    lo, hi = float(p.min()), float(p.max())
    scatter.plot([lo, hi], [lo, hi], color="#bbb", lw=.8)
    scatter.set(title="Predicted vs true", xlabel="true", ylabel="predicted")
    scatter.legend()
    return figure_png(fig)


def _headline_rows(metrics, overall) -> List[List[Any]]:
    if metrics.task == "regression":
        return [["MAE", overall.mae["float"], overall.mae["int8"],
                 f"{overall.mae['int8'] - overall.mae['float']:+.4f}"],
                ["RMSE", overall.rmse["float"], overall.rmse["int8"], ""],
                ["mean |float - int8| prediction", "", "",
                 overall.mean_abs_float_int8_difference]]
    rows = [["top-1 accuracy", metrics.float_accuracy, metrics.int8_accuracy,
             f"{-metrics.accuracy_delta_pt:+.2f} pt"]]
    if (metrics.task or "multiclass") == "multiclass":
        rows.append([f"top-{overall.top_k} accuracy", overall.top_k_accuracy["float"],
                     overall.top_k_accuracy["int8"], ""])
    rows.append(["top-1 agreement float vs int8", "", "", metrics.top1_agreement])
    return rows


def _search(found: SearchReport) -> str:
    """Accuracy-aware search: the sensitivity ranking (plot) and every trial (table)."""
    e = html.escape
    sens = found.sensitivity
    head, unit = ("MAE", "% of float MAE") if found.metric == "mae" else ("top-1", "pt")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, max(2.0, 0.3 * len(sens) + 1)))
    names = [s.name for s in sens][::-1]
    drops = [s.drop_pt for s in sens][::-1]
    ax.barh(names, drops, color=["#c33" if d > found.budget_pt else "#888" for d in drops])
    ax.axvline(found.budget_pt, color="#444", lw=.8, ls="--")
    ax.set_xlabel(f"{head} drop ({unit}) with only this layer quantized "
                  f"({found.validation_split})")
    ax.set_title("Per-layer sensitivity, most costly at the top (dashed: budget)")
    status = "ok" if found.status == "within_budget" else "bad"
    out = ['<h2 id="search">Accuracy-aware search</h2>',
           f'<p class="{status}">{e(found.reason)}</p>',
           f"<p>Budget {found.budget_pt} {unit} "
           + (f"above float (MAE {found.float_accuracy:.4g})" if head == "MAE" else
              f"below float (top-1 {100 * found.float_accuracy:.2f}%)")
           + f" on {found.examples:,} "
           f"{e(found.validation_split)!s} examples (not the gate's split); target "
           f"{e(found.target)}; {found.seconds:.0f} s."
           + (f" This split resolves drops of about {found.resolution_pt:.2f} pt (95 %, "
              "paired)." if found.resolution_pt else "") + "</p>"
           + (f'<p class="bad">WARNING: {e(found.warning)}</p>' if found.warning
              else ""), figure_png(fig),
           _table(["layer", "class", f"{head} alone", f"drop ({unit})", "output SNR (dB)"],
                  [[s.name, s.cls, s.accuracy, f"{s.drop_pt:+.2f}",
                    s.output_snr_db] for s in sens], left=2)]
    rows = []
    for t in found.trials:
        etpu = t.edgetpu
        ci = ("" if t.drop_low_pt is None else
              f" [{t.drop_low_pt:+.2f}, {t.drop_high_pt:+.2f}]")
        rows.append([t.index, t.move, t.change, t.accuracy, f"{t.drop_pt:+.2f}{ci}",
                     t.int8_bytes, t.latency_ms, t.float_ops,
                     f"{etpu.predicted_on_tpu}/{etpu.ops} (split at "
                     f"{etpu.first_unmapped})" if etpu else "-",
                     "chosen" if t.index == found.chosen else
                     ("yes" if t.within_budget else "no")])
    out.append(_table(["trial", "move", "change", f"val {head}", f"drop ({unit}, 95% paired)",
                       "int8 bytes",
                       "latency (ms)", "float ops", "Edge TPU ops", "within budget"], rows,
                      left=3))
    return "".join(out)


def render(metrics, export=None, title: str = "tfx-qat run report") -> str:
    """The report as one HTML string (no external files or network); its sections follow the
    task: confusion matrix and per-class deltas for classifiers, ROC/PR curves for binary,
    error histograms and predicted-vs-true for regression. ``metrics`` / ``export``: the
    report_files.Metrics / ExportReport, or the parsed metrics.json / export_report.json."""
    e = html.escape
    metrics = metrics if isinstance(metrics, Metrics) else Metrics.load(metrics)
    export = export if isinstance(export, ExportReport) else ExportReport.load(export)
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
           f"<style>{CSS}</style></head><body><h1>{e(title)}</h1>",
           _headline(metrics, export), _decision(metrics), _task_sections(metrics),
           _layers(export.qat_report), _export_checks(export),
           _size_latency(metrics, export), "</body></html>"]
    return "\n".join(out)


def _headline(metrics: Metrics, export: ExportReport) -> str:
    e = html.escape
    overall = metrics.overall
    fb, ib = export.float_tflite_bytes, export.int8_tflite_bytes
    fl, il = metrics.float_latency_ms, metrics.int8_latency_ms
    verdict = ('<b class="ok">BLESSED</b>' if metrics.blessed else
               '<b class="bad">NOT BLESSED</b>')
    return (f'<h2 id="headline">Headline</h2><p>{verdict} on {metrics.eval_examples:,} '
            f'{e(metrics.eval_split)} examples; {e((metrics.task or "multiclass"))} model '
            f'({e(str(metrics.task_source))}).</p>' +
            _table(["", "float", "int8", "int8 vs float"], _headline_rows(metrics, overall) + [
                ["TFLite size (bytes)", fb, ib, f"{fb / ib:.2f}x smaller" if fb and ib else ""],
                *_latency_rows(metrics),
                ["how XNNPACK takes the model", metrics.float_xnnpack,
                 metrics.int8_xnnpack, "int8 is SLOWER than float"
                 if fl and il and il > fl else ""]]))


def _latency_rows(metrics: Metrics) -> List[list]:
    """Latency per example on the deployment runtime (LiteRT) and on TF's interpreter."""
    rows = []
    for prefix, rt in (("", "latency_runtime"), ("tf_", "tf_runtime")):
        fl = getattr(metrics, f"{prefix}float_latency_ms")
        il = getattr(metrics, f"{prefix}int8_latency_ms")
        if il is not None:
            rows.append([f"latency per example (ms, {getattr(metrics, rt) or 'TFLite'}, 1 thread, "
                         "batch 1)", fl, il, f"int8 {fl / il:.2f}x float speed" if fl else ""])
    if rows and metrics.latency_cpu:
        rows.append(["CPU the latency was measured on", metrics.latency_cpu, "",
                     metrics.speed_gate or ""])
    return rows


def _decision(metrics: Metrics) -> str:
    e = html.escape
    out = ['<h2 id="blessing">Blessing decision (TFMA thresholds; float = baseline, '
           'int8 = candidate)</h2><ul>' +
           "".join(f"<li>{e(r)}</li>" for r in metrics.reasons) + "</ul>"]
    failures = metrics.threshold_failures or []
    if failures:
        out.append(_table(list(failures[0].keys()), [list(c.values()) for c in failures],
                          left=len(failures[0])))
    out.append("<details><summary>tfma.EvalConfig that decided</summary><pre>"
               f"{e(json.dumps(metrics.eval_config, indent=1))}</pre></details>")
    base = metrics.baseline or {}
    out.append(f"<p>Baseline (deployed model) check: {e(str(base.get('status')))} — "
               f"{e(str(base.get('reason')))}</p><p>Evaluated int8 sha256: "
               f"<code>{e(metrics.int8_sha256)}</code></p>")
    return "\n".join(out)


def _task_sections(metrics: Metrics) -> str:
    """Curves for binary, error plots for regression, confusion + per class otherwise."""
    overall = metrics.overall
    task = (metrics.task or "multiclass")
    points = metrics.points or []
    sample = f"<p>From a uniform sample of {len(points):,} eval examples.</p>"
    out = []
    if task == "binary" and points:
        out.append('<h2 id="curves">ROC and precision-recall</h2>' + sample + _curves(points))
    if task == "regression":
        if points:
            out.append('<h2 id="errors">Errors</h2>' + sample + _errors(points))
    else:
        out.append('<h2 id="confusion">Confusion matrices</h2>' +
                   _confusion(overall.confusion_matrix))
        out.append(_per_class(overall.per_class_accuracy))
    return "\n".join(out)


def _layers(qat: Optional[QatReport]) -> str:
    e = html.escape
    out = ['<h2 id="layers">Per-layer quantization (QuantizeTrainer)</h2>']
    if qat and qat.layers:
        tr = qat.training or {}
        counts_text = ", ".join(f"{v} {k}" for k, v in (qat.counts or {}).items())
        out.append(f"<p>{e(counts_text)} layers — scheme "
                   f"{e(str(qat.config.get('scheme')))}, "
                   f"{_fmt(tr.get('seconds_per_step'))} s/step at batch {tr.get('batch_size')}"
                   "</p>")
        out.append(_table(["layer", "class", "decision", "reason"],
                          [[x.name, x.cls, x.decision, x.reason] for x in qat.layers], left=4))
    else:
        out.append("<p>No per-layer report (the quantized model did not come from "
                   "QuantizeTrainer).</p>")
    if qat and qat.search:
        out.append(_search(qat.search))
    return "\n".join(out)


def _export_checks(export: ExportReport) -> str:
    e = html.escape
    out = ['<h2 id="export">Export validation and Edge TPU</h2>']
    if not export:
        return out[0] + "\n<p>No export report found.</p>"
    parity = export.parity
    out.append(_table(["check", "result"], [
        ["input / output dtype", f"{export.input_dtype} / {export.output_dtype}"],
        ["float ops (listed float_fallback layers)", export.float_island_ops or 0],
        ["ops", json.dumps(export.op_counts)],
        [f"Keras QAT vs TFLite agreement ({parity.rule if parity else 'same predicted class'})",
         f"{parity and parity.top1_agreement} on {parity and parity.examples} examples"],
        ["max |score error|", parity and parity.max_abs_error],
    ], left=2))
    edge = export.edgetpu
    pred, comp = edge and edge.prediction, edge and edge.compile
    if pred:
        first = pred.first_unmapped and dataclasses.asdict(pred.first_unmapped)
        out.append(f"<p>Edge TPU: predicted {pred.predicted_on_tpu}/{pred.total_ops} ops "
                   f"on the TPU (first unmapped: {e(str(first))}); "
                   f"compiler: {e(str(comp and comp.status))} — "
                   f"{e(str(comp and comp.message))}</p>")
        out.append(_table(["#", "op", "version", "on TPU", "why not"],
                          [[o.index, o.op, o.version, "yes" if o.predicted_on_tpu else "no",
                            "; ".join(o.reasons)] for o in pred.ops], left=0))
    return "\n".join(out)


def _size_latency(metrics: Metrics, export: ExportReport) -> str:
    fb, ib = export.float_tflite_bytes, export.int8_tflite_bytes
    fl, il = metrics.float_latency_ms, metrics.int8_latency_ms
    out = ['<h2 id="size-latency">Size and latency</h2>']
    if fb and ib:
        out.append(_bars(["float", "int8"], [fb / 1024, ib / 1024], "TFLite size", "KiB"))
    if fl and il:
        out.append(_bars(["float", "int8"], [fl, il], "Latency per example on "
                         f"{metrics.latency_runtime or 'TFLite'} (1 thread, batch 1)", "ms"))
    out.append(_op_profile(metrics.op_profile))
    return "\n".join(out)


def _op_profile(prof: Optional[OpProfiles]) -> str:
    """Time per op type, int8 beside float: each op timed alone in the mode the whole model runs
    it (XNNPACK delegate or TFLite's builtin kernels); an op type int8 leaves to the builtin
    kernels while float gets it into XNNPACK is a runtime limit, named as such."""
    out = ['<h2 id="op-profile">Where the time goes (per op, deployment runtime, 1 thread)</h2>']
    if prof is None or not (prof.int8 or prof.float):
        return out[0] + "<p>No per-op profile in these metrics.</p>"
    models = (("int8", prof.int8), ("float", prof.float))
    for k, p in models:
        if p and p.error:
            out.append(f"<p>{k}: not profiled — {html.escape(p.error)}</p>")
    from tfx_qat.quant_lib.tflite import op_profile  # pylint: disable=g-import-not-at-top
    rows = op_profile.compare(prof.int8.to_json() if prof.int8 else {},
                              prof.float and prof.float.to_json())
    cells = [[r["op"]] + [r.get(f"{k}_{c}", "") for k in ("int8", "float")
                          for c in ("count", "us", "runs_in")] for r in rows]
    limits = [r["op"] for r in rows if r["loses"] == "builtin"]
    kernels = [f"{r['op']} ({r['int8_count']} ops: int8 {r['int8_us']:.0f} us, float "
               f"{r['float_us']:.0f} us)" for r in rows if r["loses"] == "slower kernel"]
    whole = [f"{k}: the whole model {p.whole_us:.1f} us, its ops alone sum to "
             f"{p.ops_sum_us:.1f} us" for k, p in models if p and p.whole_us is not None]
    out.append("<p>" + html.escape("; ".join(whole)) + " (each op is timed cut out on its own: no "
               "hand-offs between delegate partitions and builtin kernels).</p>")
    out.append(_table(["op", "int8 ops", "int8 us", "int8 runs in", "float ops", "float us",
                       "float runs in"], cells))
    gone = [r["op"] for r in rows if "float_count" in r and "int8_count" not in r]
    if gone:
        out.append(f"<p>Float ops with no int8 op of their type: {html.escape(', '.join(gone))} "
                   "— the int8 graph computes them from other ops (HARD_SWISH as ADD and MUL "
                   "ops, each with its own requantization: TFLite's int8 HARD_SWISH kernel is not "
                   "taken by XNNPACK and would split the delegate graph).</p>")
    if limits:
        out.append("<p class='bad'>Runtime limit: the XNNPACK delegate of this TFLite has no int8 "
                   f"kernel for {html.escape(', '.join(limits))}, so the int8 model runs "
                   "it in TFLite's builtin kernels (each hand-off splits the delegate graph). "
                   "What you can do: keep the layers that make it float "
                   "(QuantizationConfig.float_fallback_names) or use another activation.</p>")
    if kernels:
        out.append("<p class='bad'>Runtime limit: as many ops, more time in int8 — this "
                   "TFLite's XNNPACK int8 kernel is slower than its float kernel on this CPU for "
                   f"{html.escape('; '.join(kernels))}. tfx-qat cannot change a kernel; keeping "
                   "those layers float (QuantizationConfig.float_fallback_names) adds QUANTIZE/"
                   "DEQUANTIZE around each one (measured in make bench: slower still for "
                   "MobileNetV3's depthwise convs).</p>")
    return "".join(out)


def main(argv=None) -> int:
    args = argv or sys.argv[1:]
    if len(args) != 3:
        print("usage: python -m tfx_qat.quant_lib.reports.report METRICS_JSON EXPORT_REPORT_JSON OUT_HTML",
              file=sys.stderr)
        return 2
    with open(args[0]) as f:
        metrics = json.load(f)
    with open(args[1]) as f:
        export = json.load(f)
    with open(args[2], "w") as f:
        f.write(render(metrics, export))
    return 0


if __name__ == "__main__":
    sys.exit(main())
