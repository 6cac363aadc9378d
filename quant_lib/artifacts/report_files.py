"""The JSON files tfx-qat writes inside its artifacts, each top-level key defined once (as
``records`` owns the MLMD properties): ``metrics.json`` (QuantEvaluator: ``Metrics``) and
``export_report.json`` (IntegerExporter: ``ExportReport``).

Writers build the dataclass (a misspelled key is a TypeError where it is written) and write
``to_json()``; readers ``load`` the parsed file (a key no field names is an error naming the file)
and read attributes. The nested data is typed here too: what a slice holds (``SliceReport``,
its per-class ``ClassAccuracy``, the ``Paired*`` evidence) and what the export report carries
(``Parity``, ``EdgeTpuReport``, QuantizeTrainer's ``QatReport`` with its ``SearchReport``,
whose ``Trial`` / ``LayerSensitivity`` / ``LayerDecision`` the search and QAT code build
directly). Readers (the report, the model card, the summary, ``experiments``) read attributes,
never keys. ``run_summary`` owns summary.json the same way.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple, Union


def _plain(value):
    """A value as JSON: nested records by their own ``to_json``, containers element-wise."""
    if dataclasses.is_dataclass(value):
        return value.to_json()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class JsonRecord:
    """A JSON object as a frozen dataclass: every field a key; unknown keys are refused.
    ``NESTED`` names the fields holding records (or lists of them): typed on construction,
    whether a writer passes dicts or a reader loads the file. ``KEEP_NONE``: unset keys are
    written as null (a file whose readers index every key) instead of left out."""
    FILE: ClassVar[str] = ""  # the file it is written in, named by errors
    NESTED: ClassVar[Dict[str, type]] = {}
    KEEP_NONE: ClassVar[bool] = False

    def __post_init__(self):
        for name, record in self.NESTED.items():
            value = getattr(self, name)
            if isinstance(value, list):
                value = [record.load(v) for v in value]
            elif value is not None:
                value = record.load(value)
            object.__setattr__(self, name, value)

    def to_json(self) -> Dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if self.KEEP_NONE or getattr(self, f.name) is not None}

    @classmethod
    def load(cls, doc: Mapping[str, Any]):
        if isinstance(doc, cls):
            return doc
        unknown = sorted(set(doc) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            where = f"{cls.FILE}: " if cls.FILE else ""
            raise ValueError(f"{where}keys {unknown} are not {cls.__name__} fields "
                             f"({cls.__module__}): written by another tfx-qat version?")
        return cls(**doc)


@dataclasses.dataclass(frozen=True)
class JsonFile(JsonRecord):
    """A whole file (``FILE``); ``load(None)`` is the empty one (a file not written)."""

    @classmethod
    def load(cls, doc: Optional[Mapping[str, Any]]):
        return super().load(doc or {})

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in dataclasses.fields(self))


@dataclasses.dataclass(frozen=True)
class _MetricsRecord(JsonRecord):
    FILE: ClassVar[str] = "metrics.json"


@dataclasses.dataclass(frozen=True)
class PairedEvidence(_MetricsRecord):
    """Accuracy on paired examples (``evaluation.paired.PairedAccuracy``): ``float_only``
    examples only float gets right, ``int8_only`` the reverse; the int8-minus-float difference
    and its 95 % interval in percentage points."""
    n: int
    float_only: int
    int8_only: int
    diff_pt: float
    interval_pt: Tuple[float, float]
    resolution_pt: float

    @property
    def harmed(self) -> bool:
        """The whole interval below zero: int8 is worse on these examples, not by chance."""
        return self.interval_pt[1] < 0


@dataclasses.dataclass(frozen=True)
class PairedMae(_MetricsRecord):
    """Mean |error| int8 minus float on paired examples, with its 95 % interval."""
    n: int
    mae_diff: float
    interval: Tuple[float, float]

    @property
    def harmed(self) -> bool:
        return self.interval[0] > 0


@dataclasses.dataclass(frozen=True)
class PairedAuc(_MetricsRecord):
    """ROC AUC int8 minus float (DeLong, paired; scores binned as TFMA's); ``n`` 0: not
    computable (one class only)."""
    n: int
    float_auc: Optional[float] = None
    int8_auc: Optional[float] = None
    auc_diff: Optional[float] = None
    interval: Optional[Tuple[float, float]] = None
    method: Optional[str] = None
    bins: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class ClassAccuracy(_MetricsRecord):
    """One class on the slice: its examples, each model's accuracy on them (``float``,
    ``int8``, ``deployed`` keys in the file) and the paired evidence."""
    support: int
    accuracy: Dict[str, float]
    paired: Optional[PairedEvidence] = None

    def to_json(self) -> Dict[str, Any]:
        return {**self.accuracy, "support": self.support,
                **({"paired": self.paired.to_json()} if self.paired else {})}

    @classmethod
    def load(cls, doc: Mapping[str, Any]) -> "ClassAccuracy":
        doc = dict(doc)
        paired = doc.pop("paired", None)
        return cls(support=doc.pop("support"), accuracy=doc,
                   paired=PairedEvidence.load(paired) if paired else None)


@dataclasses.dataclass(frozen=True)
class SliceReport(_MetricsRecord):
    """One slice of ``metrics.json`` (``evaluation.metrics``' SliceStats / RegressionStats):
    per-model values are dicts keyed by model (``float``, ``int8``, ``deployed``)."""
    examples: int
    paired: Optional[Union[PairedEvidence, PairedMae]] = None
    # classifiers
    top_k: Optional[int] = None
    accuracy: Optional[Dict[str, float]] = None
    correct: Optional[Dict[str, int]] = None
    top1_ties: Optional[Dict[str, int]] = None
    top_k_accuracy: Optional[Dict[str, float]] = None
    agreement: Optional[float] = None
    per_class_accuracy: Optional[Dict[str, ClassAccuracy]] = None
    confusion_matrix: Optional[Dict[str, list]] = None
    paired_auc: Optional[PairedAuc] = None
    # regression
    mae: Optional[Dict[str, float]] = None
    rmse: Optional[Dict[str, float]] = None
    mean_abs_float_int8_difference: Optional[float] = None
    max_abs_float_int8_difference: Optional[float] = None

    @classmethod
    def load(cls, doc: Mapping[str, Any]) -> "SliceReport":
        if isinstance(doc, SliceReport):
            return doc
        doc = dict(doc)
        paired = doc.get("paired")
        if isinstance(paired, dict):
            doc["paired"] = (PairedMae if "mae_diff" in paired else PairedEvidence).load(paired)
        if isinstance(doc.get("paired_auc"), dict):
            doc["paired_auc"] = PairedAuc.load(doc["paired_auc"])
        if doc.get("per_class_accuracy") is not None:
            doc["per_class_accuracy"] = {c: ClassAccuracy.load(v)
                                         for c, v in doc["per_class_accuracy"].items()}
        return super().load(doc)

    @property
    def is_regression(self) -> bool:
        return self.mae is not None


@dataclasses.dataclass(frozen=True)
class OpTypeTime(_MetricsRecord):
    """One op type on one path (XNNPACK or builtin kernels): ``tflite.op_profile.Profile.by_op``."""
    op: str
    xnnpack: bool
    count: int
    us: float


@dataclasses.dataclass(frozen=True)
class OpProfile(_MetricsRecord):
    """Where one model's time goes (``tflite.op_profile.Profile.to_json``), or why it was not
    profiled (``error``)."""
    NESTED: ClassVar[Dict[str, type]] = {"by_op": OpTypeTime}
    whole_us: Optional[float] = None
    ops_sum_us: Optional[float] = None
    by_op: Optional[List[OpTypeTime]] = None
    error: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class OpProfiles(_MetricsRecord):
    """The int8 and the float model's op profiles (``evaluation.latency.op_profiles``)."""
    NESTED: ClassVar[Dict[str, type]] = {"int8": OpProfile, "float": OpProfile}
    int8: Optional[OpProfile] = None
    float: Optional[OpProfile] = None  # pylint: disable=redefined-builtin


@dataclasses.dataclass(frozen=True)
class Metrics(JsonFile):
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
    slices: Optional[Dict[str, SliceReport]] = None  # slice name -> what was measured on it
    int8_sha256: Optional[str] = None
    eval_config: Optional[dict] = None        # the tfma.EvalConfig that decided
    points: Optional[list] = None             # (label, float, int8) sample for the report
    op_profile: Optional[OpProfiles] = None   # int8 / float: tfx_qat.quant_lib.tflite.op_profile
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

    NESTED: ClassVar[Dict[str, type]] = {"op_profile": OpProfiles}

    def __post_init__(self):
        super().__post_init__()
        if self.slices is not None:  # typed whether written (dicts) or loaded (JSON)
            object.__setattr__(self, "slices", {k: SliceReport.load(v)
                                                for k, v in self.slices.items()})

    @property
    def overall(self) -> Optional[SliceReport]:
        return (self.slices or {}).get("overall")


# --- export_report.json's nested records (IntegerExporter; QuantizeTrainer's qat_report.json):
# every key written, null included, as the dataclasses they replaced wrote them.

@dataclasses.dataclass(frozen=True)
class _ExportRecord(JsonRecord):
    FILE: ClassVar[str] = "export_report.json"
    KEEP_NONE: ClassVar[bool] = True


@dataclasses.dataclass(frozen=True)
class Parity(_ExportRecord):
    """Keras QAT model vs the int8 file on held-out examples (``tflite.export.parity``)."""
    examples: int
    top1_agreement: float
    near_ties: int
    rule: str
    max_abs_error: float


@dataclasses.dataclass(frozen=True)
class OpVerdict(_ExportRecord):
    """One op of the int8 graph as the Edge TPU analyzer (``tflite.edgetpu``) judges it."""
    index: int
    op: str
    version: int
    supported: bool  # passes every rule on its own
    predicted_on_tpu: bool  # supported and before the first unsupported op
    reasons: List[str]


@dataclasses.dataclass(frozen=True)
class EdgeTpuPredicted(_ExportRecord):
    NESTED: ClassVar[Dict[str, type]] = {"first_unmapped": OpVerdict, "ops": OpVerdict}
    total_ops: int
    predicted_on_tpu: int
    predicted_on_cpu: int
    first_unmapped: Optional[OpVerdict]
    ops: List[OpVerdict]


@dataclasses.dataclass(frozen=True)
class EdgeTpuCompiled(_ExportRecord):
    """What ``edgetpu_compiler`` did (``tflite.edgetpu.CompileResult``)."""
    status: str  # compiled | not_available | failed | timeout
    compiler: Optional[str] = None
    compiled_path: Optional[str] = None
    log_path: Optional[str] = None
    message: str = ""
    parsed: Optional[dict] = None  # tflite.edgetpu_log.CompilerLog.to_dict()


@dataclasses.dataclass(frozen=True)
class EdgeTpuReport(_ExportRecord):
    NESTED: ClassVar[Dict[str, type]] = {"prediction": EdgeTpuPredicted,
                                         "compile": EdgeTpuCompiled}
    prediction: Optional[EdgeTpuPredicted] = None
    compile: Optional[EdgeTpuCompiled] = None


@dataclasses.dataclass(frozen=True)
class LayerDecision(_ExportRecord):
    """What QAT did with one layer (``qat.plan``)."""
    name: str
    cls: str
    decision: str  # quantized | folded | float | input
    reason: str


@dataclasses.dataclass(frozen=True)
class LayerSensitivity(_ExportRecord):
    """One layer quantized alone (``search.sensitivity``)."""
    name: str
    cls: str
    accuracy: float  # top-1 with only this layer quantized
    drop_pt: float  # float minus that, percentage points
    output_snr_db: float  # model output vs the float model's


@dataclasses.dataclass(frozen=True)
class TrialEdgeTpu(_ExportRecord):
    """A trial's int8 graph as the Edge TPU analyzer sees it (search target ``edgetpu``)."""
    ops: int
    predicted_on_tpu: int
    first_unmapped: Optional[str]  # "#index OP" where the graph leaves the TPU


@dataclasses.dataclass(frozen=True)
class Trial(_ExportRecord):
    """One candidate the accuracy-aware search converted and measured (``search.search``)."""
    NESTED: ClassVar[Dict[str, type]] = {"edgetpu": TrialEdgeTpu}
    index: int
    move: str  # "as configured" | one of config.MOVES
    change: str  # what differs from the configured model
    accuracy: float  # int8 TFLite top-1 on the validation split
    drop_pt: float
    int8_bytes: int
    latency_ms: float
    float_ops: int
    within_budget: bool
    seconds: float
    config: Dict[str, object]  # the QuantizationConfig fields this trial changed
    edgetpu: Optional[TrialEdgeTpu] = None  # analyzer: ops mapped, where the graph splits
    drop_low_pt: Optional[float] = None  # 95 % interval of the paired drop (same examples)
    drop_high_pt: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class SearchReport(_ExportRecord):
    """The accuracy-aware search as ``qat_report.json`` holds it (``search.SearchResult``)."""
    NESTED: ClassVar[Dict[str, type]] = {"sensitivity": LayerSensitivity, "trials": Trial}
    status: str
    reason: str
    budget_pt: float
    target: str
    validation_split: str
    examples: int
    float_accuracy: float
    chosen: int
    seconds: float
    sensitivity: List[LayerSensitivity]
    trials: List[Trial]
    resolution_pt: Optional[float] = None
    warning: Optional[str] = None
    metric: str = "accuracy"


@dataclasses.dataclass(frozen=True)
class QatReport(_ExportRecord):
    """QuantizeTrainer's ``qat_report.json`` (``qat.train.QATResult.report``), also carried
    inside ``export_report.json``."""
    NESTED: ClassVar[Dict[str, type]] = {"layers": LayerDecision, "search": SearchReport}
    config: dict
    base_model: Optional[str] = None
    float_model: Optional[dict] = None
    training: Optional[dict] = None
    counts: Optional[Dict[str, int]] = None
    layers: Optional[List[LayerDecision]] = None
    search: Optional[SearchReport] = None


@dataclasses.dataclass(frozen=True)
class ExportReport(JsonFile):
    """IntegerExporter's ``export_report.json``: what was converted and checked."""
    FILE: ClassVar[str] = "export_report.json"
    NESTED: ClassVar[Dict[str, type]] = {"parity": Parity, "edgetpu": EdgeTpuReport,
                                         "qat_report": QatReport, "op_profile": OpProfile}
    config: Optional[dict] = None             # the ExportConfig
    int8_tflite_bytes: Optional[int] = None
    float_tflite_bytes: Optional[int] = None
    size_ratio_float_over_int8: Optional[float] = None
    op_counts: Optional[Dict[str, int]] = None
    float_island_ops: Optional[int] = None
    input_dtype: Optional[str] = None
    output_dtype: Optional[str] = None
    parity: Optional[Parity] = None           # Keras QAT model vs the int8 file
    input_contract: Optional[list] = None     # what a client feeds each input
    metadata: Optional[dict] = None           # the TFLite metadata written
    edgetpu: Optional[EdgeTpuReport] = None
    op_profile: Optional[OpProfile] = None    # the int8 model's, tfx_qat.quant_lib.tflite.op_profile
    qat_report: Optional[QatReport] = None    # QuantizeTrainer's qat_report.json
