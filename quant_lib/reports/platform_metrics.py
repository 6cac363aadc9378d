"""The run's numbers as flat scalars, for the platforms' run comparison.

Kubeflow Pipelines' Compare page ("Scalar Metrics": frontend/src/lib/v2/CompareUtils.ts) and
Vertex AI Experiments build their tables from artifacts typed ``system.Metrics``, one row per
numeric custom property (``display_name`` excepted). QuantEvaluator writes these on its
``metrics`` output; the names say the unit, and the speed-up names its runtime and whether the
CPU had int8 dot products (``tfx_qat.quant_lib.tflite.cpu``), as no table cell can carry a footnote.
"""
from __future__ import annotations

import re
from typing import Dict, Optional, Sequence

CONFUSION_MATRIX_KEY = "confusionMatrix"  # the custom property KFP's UI reads


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def scalars(result, export) -> Dict[str, float]:
    """``result``: tfx_qat.quant_lib.evaluation.verdict.EvaluationResult; ``export``: the int8 model's
    records.Int8Model. Numbers only (booleans as 0/1); what was not measured is left out."""
    o, lat = result.overall, result.latency
    out: Dict[str, Optional[float]] = {"blessed": result.blessed, "eval_examples": o.n}
    if result.task.is_classification:
        f, i = o.value("accuracy", "float"), o.value("accuracy", "int8")
        lo, hi = o.paired().interval_pt()
        out.update(float_accuracy=f, int8_accuracy=i, int8_minus_float_pt=100 * (i - f),
                   int8_minus_float_pt_low95=lo, int8_minus_float_pt_high95=hi)
        per_class = o.paired_per_class()
        if per_class:
            out["worst_class_change_pt"] = min(p.diff_pt for p in per_class.values())
        auc = o.paired_auc()
        if auc is not None:
            a = auc.to_dict()
            out.update(float_auc=a["float_auc"], int8_auc=a["int8_auc"])
    else:
        p = o.paired().to_dict()
        out.update(float_mae=o.value("mae", "float"), int8_mae=o.value("mae", "int8"),
                   int8_minus_float_mae=p["mae_diff"], int8_minus_float_mae_low95=p["interval"][0],
                   int8_minus_float_mae_high95=p["interval"][1])
    out.update(float_tflite_bytes=export.float_tflite_bytes,
               int8_tflite_bytes=export.int8_tflite_bytes)
    if lat.float_latency_ms and lat.int8_latency_ms:
        cpu = {True: "int8dot", False: "no_int8dot"}.get(lat.latency_int8_dot, "cpu_unknown")
        out[f"int8_speedup_{_slug(lat.latency_runtime or 'tflite')}_{cpu}"] = \
            lat.float_latency_ms / lat.int8_latency_ms
    return {k: float(v) for k, v in out.items() if v is not None}


def confusion_matrix(result, labels: Sequence[str] = ()) -> Optional[Dict[str, list]]:
    """The int8 model's confusion matrix on the whole split as KFP's ClassificationMetrics holds
    it: ``annotationSpecs`` (one ``displayName`` per class: its label, else its index) and
    ``rows`` (true class) of ``row`` (predicted class counts). None for a regression model."""
    if not result.task.is_classification:
        return None
    counts = result.overall.confusion["int8"]
    names = list(labels) if len(labels) == len(counts) else [str(i) for i in range(len(counts))]
    return {"annotationSpecs": [{"displayName": n} for n in names],
            "rows": [{"row": [int(c) for c in row]} for row in counts]}
