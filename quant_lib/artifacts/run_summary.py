"""``summary.json``: one run as the CLI writes it beside MLMD (``<output_root>/summary.json``), the
file CI jobs read. Every key is defined here once: ``tfx_qat.pipelines.summary`` builds a
``RunSummary`` from the run's records and metrics file, prints it and writes ``to_json()``; a
reader ``load``s the parsed file (a key no field names is an error) and reads attributes.

Every key is written, null included: jobs index keys without guarding each one.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple

from tfx_qat.quant_lib.artifacts.report_files import JsonFile, JsonRecord, PairedAuc, PairedMae


@dataclasses.dataclass(frozen=True)
class _Part(JsonRecord):
    FILE: ClassVar[str] = "summary.json"
    KEEP_NONE: ClassVar[bool] = True


@dataclasses.dataclass(frozen=True)
class EdgeTpuSummary(_Part):
    """The Edge TPU analyzer's prediction and the compiler's result (records.Int8Model)."""
    predicted_ops_on_tpu: Optional[int] = None
    predicted_ops_on_cpu: Optional[int] = None
    predicted_first_unmapped: Optional[str] = None
    compiler_status: Optional[str] = None
    compiler_message: Optional[str] = None
    ops_on_tpu: Optional[int] = None
    ops_on_cpu: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class SearchSummary(_Part):
    """The accuracy-aware search, when one ran (qat_report.json holds every trial)."""
    status: str
    reason: Optional[str] = None
    trials: Optional[int] = None
    warning: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class QatSummary(_Part):
    """What QuantizeTrainer did (records.QatModel) and the float model's step time."""
    NESTED: ClassVar[Dict[str, type]] = {"search": SearchSummary}
    int8_method: Optional[str] = None  # qat | ptq (kept by the search)
    quantized_layers: Optional[int] = None
    folded_layers: Optional[int] = None
    float_layers: Optional[int] = None
    float_layer_names: List[str] = dataclasses.field(default_factory=list)
    qat_seconds_per_step: Optional[float] = None
    float_seconds_per_step: Optional[float] = None
    report: Optional[str] = None  # the qat_report.json path
    search: Optional[SearchSummary] = None


@dataclasses.dataclass(frozen=True)
class AppSummary(_Part):
    """What an app gets: the TFLite metadata packed, its limits, the files pushed."""
    metadata: Optional[str] = None
    metadata_limits: List[str] = dataclasses.field(default_factory=list)
    labels_source: Optional[str] = None
    pushed_files: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class ClassChange(_Part):
    """One class on the whole eval split: int8 minus float with its paired 95 % interval (pt);
    ``float`` / ``int8`` keys in the file hold each model's accuracy on the class."""
    support: int
    float_accuracy: float
    int8_accuracy: float
    delta_pt: float
    interval_pt: Optional[Tuple[float, float]] = None

    def to_json(self) -> Dict[str, Any]:
        return {"support": self.support, "float": self.float_accuracy, "int8": self.int8_accuracy,
                "delta_pt": self.delta_pt,
                "interval_pt": list(self.interval_pt) if self.interval_pt else None}

    @classmethod
    def load(cls, doc: Mapping[str, Any]) -> "ClassChange":
        if isinstance(doc, cls):
            return doc
        doc = dict(doc)
        doc["float_accuracy"], doc["int8_accuracy"] = doc.pop("float"), doc.pop("int8")
        return super().load(doc)

    @property
    def beyond_noise(self) -> bool:
        """The whole interval below zero: int8 is worse on this class, not by chance."""
        return bool(self.interval_pt) and self.interval_pt[1] < 0


@dataclasses.dataclass(frozen=True)
class ArtifactUris(_Part):
    blessing: Optional[str] = None
    evaluation: Optional[str] = None
    int8_model: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class RunSummary(JsonFile):
    """The latest run of a pipeline: headline, size, latency, gate, push and where each
    artifact is."""
    FILE: ClassVar[str] = "summary.json"
    KEEP_NONE: ClassVar[bool] = True
    NESTED: ClassVar[Dict[str, type]] = {
        "edgetpu": EdgeTpuSummary, "qat": QatSummary, "app": AppSummary,
        "paired_auc": PairedAuc, "paired_mae": PairedMae, "artifacts": ArtifactUris}
    task: str = "multiclass"  # multiclass | binary | regression
    float_mae: Optional[float] = None  # regression
    int8_mae: Optional[float] = None
    float_accuracy: Optional[float] = None  # classifiers
    int8_accuracy: Optional[float] = None
    delta_pt: Optional[float] = None  # float minus int8
    float_tflite_bytes: Optional[int] = None
    int8_tflite_bytes: Optional[int] = None
    blessed: bool = False
    pushed_path: Optional[str] = None
    size_ratio_float_over_int8: Optional[float] = None
    parity_top1_agreement: Optional[float] = None
    parity_near_ties: Optional[int] = None
    parity_examples: Optional[int] = None
    parity_max_abs_error: Optional[float] = None
    edgetpu: Optional[EdgeTpuSummary] = None
    qat: Optional[QatSummary] = None
    app: Optional[AppSummary] = None
    baseline_check: Optional[str] = None
    blessing_reasons: List[str] = dataclasses.field(default_factory=list)
    eval_examples: Optional[int] = None
    int8_top1_ties: Optional[int] = None
    per_class: Dict[str, ClassChange] = dataclasses.field(default_factory=dict)
    paired_auc: Optional[PairedAuc] = None  # binary
    paired_mae: Optional[PairedMae] = None  # regression
    int8_latency_ms: Optional[float] = None
    float_latency_ms: Optional[float] = None
    latency_runtime: Optional[str] = None
    tf_int8_latency_ms: Optional[float] = None
    tf_float_latency_ms: Optional[float] = None
    tf_runtime: Optional[str] = None
    latency_cpu: Optional[str] = None
    speed_gate: Optional[str] = None
    int8_runtimes_max_abs_diff: Optional[float] = None
    int8_xnnpack: Optional[str] = None
    float_xnnpack: Optional[str] = None
    latency_int8_dot: Optional[bool] = None
    report: Optional[str] = None  # report.html, when it was written
    report_status: Optional[str] = None
    artifacts: Optional[ArtifactUris] = None
    wall_seconds: Optional[float] = None  # LocalDagRunner runs (the CLI's)
    output_root: Optional[str] = None

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "per_class", {c: ClassChange.load(v)
                                               for c, v in (self.per_class or {}).items()})
