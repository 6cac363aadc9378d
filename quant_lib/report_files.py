"""The JSON files tfx-qat writes inside its artifacts, each top-level key defined once (as
``records`` owns the MLMD properties): ``metrics.json`` (QuantEvaluator: ``Metrics``) and
``export_report.json`` (IntegerExporter: ``ExportReport``).

Writers build the dataclass (a misspelled key is a TypeError where it is written) and write
``to_json()``; readers ``load`` the parsed file (a key no field names is an error naming the file)
and read attributes. What a slice holds (``Metrics.slices``) is ``quant_lib.metrics``' own
``to_dict``, its one owner; the report, the model card, the summary and ``experiments`` read
these files through this module only.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, List, Mapping, Optional


@dataclasses.dataclass(frozen=True)
class _File:
    FILE: ClassVar[str] = ""

    def to_json(self) -> Dict[str, Any]:
        """The file's content: every recorded (non-None) key."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    @classmethod
    def load(cls, doc: Optional[Mapping[str, Any]]):
        """The parsed file back as its dataclass (None: the empty one, a file not written)."""
        doc = doc or {}
        unknown = sorted(set(doc) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{cls.FILE}: keys {unknown} are not {cls.__name__} fields "
                             "(quant_lib/report_files.py): written by another tfx-qat version?")
        return cls(**doc)

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in dataclasses.fields(self))


@dataclasses.dataclass(frozen=True)
class Metrics(_File):
    """QuantEvaluator's ``metrics.json``: what it measured on the eval split and decided."""
    FILE: ClassVar[str] = "metrics.json"
    eval_split: Optional[str] = None
    eval_examples: Optional[int] = None
    task: Optional[str] = None                # multiclass | binary | regression
    task_source: Optional[str] = None
    float_accuracy: Optional[float] = None    # classifiers
    int8_accuracy: Optional[float] = None
    accuracy_delta_pt: Optional[float] = None  # float minus int8
    top1_agreement: Optional[float] = None
    float_mae: Optional[float] = None         # regression
    int8_mae: Optional[float] = None
    blessed: Optional[bool] = None
    reasons: Optional[List[str]] = None
    threshold_failures: Optional[list] = None
    tfma_headline: Optional[dict] = None
    baseline: Optional[dict] = None           # the deployed-model check
    slices: Optional[Dict[str, dict]] = None  # name -> quant_lib.metrics' to_dict()
    int8_sha256: Optional[str] = None
    eval_config: Optional[dict] = None        # the tfma.EvalConfig that decided
    points: Optional[list] = None             # (label, float, int8) sample for the report
    op_profile: Optional[dict] = None         # int8 / float: quant_lib.op_profile
    # Latency (evaluation.compare_latency): LiteRT's figures, TF's interpreter beside them.
    int8_latency_ms: Optional[float] = None
    float_latency_ms: Optional[float] = None
    latency_runtime: Optional[str] = None
    tf_int8_latency_ms: Optional[float] = None
    tf_float_latency_ms: Optional[float] = None
    tf_runtime: Optional[str] = None
    int8_runtimes_max_abs_diff: Optional[float] = None
    int8_xnnpack: Optional[str] = None
    float_xnnpack: Optional[str] = None
    latency_cpu: Optional[str] = None
    latency_int8_dot: Optional[bool] = None
    speed_gate: Optional[str] = None

    @property
    def overall(self) -> Dict[str, Any]:
        return (self.slices or {}).get("overall", {})


@dataclasses.dataclass(frozen=True)
class ExportReport(_File):
    """IntegerExporter's ``export_report.json``: what was converted and checked."""
    FILE: ClassVar[str] = "export_report.json"
    config: Optional[dict] = None             # the ExportConfig
    int8_tflite_bytes: Optional[int] = None
    float_tflite_bytes: Optional[int] = None
    size_ratio_float_over_int8: Optional[float] = None
    op_counts: Optional[Dict[str, int]] = None
    float_island_ops: Optional[int] = None
    input_dtype: Optional[str] = None
    output_dtype: Optional[str] = None
    parity: Optional[dict] = None             # Keras QAT model vs the int8 file
    input_contract: Optional[list] = None     # what a client feeds each input
    metadata: Optional[dict] = None           # the TFLite metadata written
    edgetpu: Optional[dict] = None
    op_profile: Optional[dict] = None         # the int8 model's, quant_lib.op_profile
    qat_report: Optional[dict] = None         # QuantizeTrainer's qat_report.json
