"""Self-contained HTML run report (plots embedded as PNG): what one float-vs-int8 run measured.

Inputs are the JSON documents the components already write (QuantEvaluator's metrics, the
IntegerExporter report, which carries QuantizeTrainer's per-layer report), so the report can be
rebuilt from artifacts alone: ``python -m quant_lib.report METRICS_JSON EXPORT_REPORT_JSON OUT``.
"""
from __future__ import annotations

import base64
import html
import io
import json
import sys
from typing import Any, Dict, List, Optional

SECTIONS = ("headline", "blessing", "confusion", "per-class", "layers", "export", "size-latency")
_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}.ok{color:#070}.bad{color:#b00}
h2{border-bottom:1px solid #ddd;margin-top:1.6em}img{max-width:100%}"""


def _png(fig) -> str:
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
    return _png(fig)


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
    return _png(fig)


def render(metrics: Dict[str, Any], export: Optional[Dict[str, Any]] = None,
           title: str = "tfx-qat run report") -> str:
    """The report as one HTML string (no external files or network)."""
    e = html.escape
    export = export or {}
    overall = metrics["slices"]["overall"]
    fb, ib = export.get("float_tflite_bytes"), export.get("int8_tflite_bytes")
    fl, il = metrics.get("float_latency_ms"), metrics.get("int8_latency_ms")
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
           f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>"]

    verdict = ('<b class="ok">BLESSED</b>' if metrics["blessed"] else
               '<b class="bad">NOT BLESSED</b>')
    out.append(f'<h2 id="headline">Headline</h2><p>{verdict} on {metrics["eval_examples"]:,} '
               f'{e(metrics["eval_split"])} examples.</p>')
    out.append(_table(["", "float", "int8", "int8 vs float"], [
        ["top-1 accuracy", metrics["float_accuracy"], metrics["int8_accuracy"],
         f"{-metrics['accuracy_delta_pt']:+.2f} pt"],
        [f"top-{overall['top_k']} accuracy", overall["top_k_accuracy"]["float"],
         overall["top_k_accuracy"]["int8"], ""],
        ["TFLite size (bytes)", fb, ib, f"{fb / ib:.2f}x smaller" if fb and ib else ""],
        ["latency per example (ms, TFLite, 1 thread, batch 1)", fl, il,
         f"int8 {fl / il:.2f}x float speed" if fl and il else ""],
        ["top-1 agreement float vs int8", "", "", metrics["top1_agreement"]],
    ]))

    out.append('<h2 id="blessing">Blessing decision</h2><ul>' +
               "".join(f"<li>{e(r)}</li>" for r in metrics["reasons"]) + "</ul>")
    checks = metrics.get("threshold_checks") or []
    if checks:
        out.append(_table(list(checks[0].keys()), [list(c.values()) for c in checks],
                          left=len(checks[0])))
    base = metrics.get("baseline") or {}
    out.append(f"<p>Baseline (deployed model) check: {e(str(base.get('status')))} — "
               f"{e(str(base.get('reason')))}</p><p>Evaluated int8 sha256: "
               f"<code>{e(metrics['int8_sha256'])}</code></p>")

    out.append('<h2 id="confusion">Confusion matrices</h2>' + _confusion(overall["confusion_matrix"]))

    pc = overall["per_class_accuracy"]
    classes = sorted(pc, key=lambda c: int(c) if str(c).isdigit() else str(c))
    deltas = [100 * (pc[c]["int8"] - pc[c]["float"]) for c in classes]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar([str(c) for c in classes], deltas, color=["#2a7" if d >= 0 else "#c33" for d in deltas])
    ax.axhline(0, color="#444", lw=.8)
    ax.set_xlabel("class")
    ax.set_ylabel("int8 - float (pt)")
    ax.set_title("Per-class accuracy delta")
    out.append('<h2 id="per-class">Per-class accuracy</h2>' + _png(fig) + _table(
        ["class", "support", "float", "int8", "delta (pt)"],
        [[c, pc[c]["support"], pc[c]["float"], pc[c]["int8"], f"{d:+.2f}"]
         for c, d in zip(classes, deltas)]))

    qat = export.get("qat_report") or {}
    out.append('<h2 id="layers">Per-layer quantization (QuantizeTrainer)</h2>')
    if qat.get("layers"):
        counts = qat.get("counts", {})
        tr = qat.get("training", {})
        counts_text = ", ".join(f"{v} {k}" for k, v in counts.items())
        out.append(f"<p>{e(counts_text)} layers — scheme "
                   f"{e(str(qat.get('config', {}).get('scheme')))}, "
                   f"{_fmt(tr.get('seconds_per_step'))} s/step at batch {tr.get('batch_size')}"
                   "</p>")
        out.append(_table(["layer", "class", "decision", "reason"],
                          [[x["name"], x["cls"], x["decision"], x["reason"]]
                           for x in qat["layers"]], left=4))
    else:
        out.append("<p>No per-layer report (the quantized model did not come from "
                   "QuantizeTrainer).</p>")

    out.append('<h2 id="export">Export validation and Edge TPU</h2>')
    if export:
        parity = export.get("parity") or {}
        out.append(_table(["check", "result"], [
            ["input / output dtype", f"{export.get('input_dtype')} / {export.get('output_dtype')}"],
            ["ops", json.dumps(export.get("op_counts"))],
            ["Keras QAT vs TFLite top-1 agreement",
             f"{parity.get('top1_agreement')} on {parity.get('examples')} examples"],
            ["max |score error|", parity.get("max_abs_error")],
        ], left=2))
        edge = export.get("edgetpu") or {}
        pred, comp = edge.get("prediction") or {}, edge.get("compile") or {}
        if pred:
            out.append(f"<p>Edge TPU: predicted {pred['predicted_on_tpu']}/{pred['total_ops']} ops "
                       f"on the TPU (first unmapped: {e(str(pred.get('first_unmapped')))}); "
                       f"compiler: {e(str(comp.get('status')))} — {e(str(comp.get('message')))}</p>")
            out.append(_table(["#", "op", "version", "on TPU", "why not"],
                              [[o["index"], o["op"], o["version"],
                                "yes" if o["predicted_on_tpu"] else "no", "; ".join(o["reasons"])]
                               for o in pred.get("ops", [])], left=0))
    else:
        out.append("<p>No export report found.</p>")

    out.append('<h2 id="size-latency">Size and latency</h2>')
    if fb and ib:
        out.append(_bars(["float", "int8"], [fb / 1024, ib / 1024], "TFLite size", "KiB"))
    if fl and il:
        out.append(_bars(["float", "int8"], [fl, il], "Latency per example (1 thread, batch 1)",
                         "ms"))
    out.append("</body></html>")
    return "\n".join(out)


def main(argv=None) -> int:
    args = argv or sys.argv[1:]
    if len(args) != 3:
        print("usage: python -m quant_lib.report METRICS_JSON EXPORT_REPORT_JSON OUT_HTML",
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
