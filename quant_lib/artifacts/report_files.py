"""The JSON files tfx-qat writes inside its artifacts, each top-level key defined once (as
``records`` owns the MLMD properties): ``metrics.json`` (QuantEvaluator: ``Metrics``) and
``export_report.json`` (IntegerExporter: ``ExportReport``).

Writers build the dataclass (a misspelled key is a TypeError where it is written) and write
``to_json()``; readers ``load`` the parsed file (a key no field names is an error naming the file)
and read attributes. What a slice holds (``Metrics.slices``) is typed here too (``SliceReport``,
its per-class ``ClassAccuracy`` and the ``Paired*`` evidence): the evaluation writes them, the
report, the model card, the summary and ``experiments`` read attributes, never keys.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple, Union


@dataclasses.dataclass(frozen=True)
class _File:
    FILE: ClassVar[str] = ""

    def to_json(self) -> Dict[str, Any]:
        """The file's content: every recorded (non-None) key."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    @classmethod
    def load(cls, doc: Optional[Mapping[str, Any]]):
        """The parsed file back as its dataclass (None: the empty one, a file not written)."""
        doc = doc or {}
        unknown = sorted(set(doc) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{cls.FILE}: keys {unknown} are not {cls.__name__} fields "
                             "(quant_lib/artifacts/report_files.py): written by another tfx-qat version?")
        return cls(**doc)

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in dataclasses.fields(self))


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
class _Record:
    """A nested record: every field a key of its JSON object; unknown keys are refused."""

    def to_json(self) -> Dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    @classmethod
    def load(cls, doc: Mapping[str, Any]):
        unknown = sorted(set(doc) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{Metrics.FILE}: keys {unknown} are not {cls.__name__} fields "
                             "(quant_lib/artifacts/report_files.py)")
        return cls(**doc)


@dataclasses.dataclass(frozen=True)
class PairedEvidence(_Record):
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
class PairedMae(_Record):
    """Mean |error| int8 minus float on paired examples, with its 95 % interval."""
    n: int
    mae_diff: float
    interval: Tuple[float, float]

    @property
    def harmed(self) -> bool:
        return self.interval[0] > 0


@dataclasses.dataclass(frozen=True)
class PairedAuc(_Record):
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
class ClassAccuracy(_Record):
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
class SliceReport(_Record):
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
    slices: Optional[Dict[str, SliceReport]] = None  # slice name -> what was measured on it
    int8_sha256: Optional[str] = None
    eval_config: Optional[dict] = None        # the tfma.EvalConfig that decided
    points: Optional[list] = None             # (label, float, int8) sample for the report
    op_profile: Optional[dict] = None         # int8 / float: tfx_qat.quant_lib.tflite.op_profile
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

    def __post_init__(self):
        if self.slices is not None:  # typed whether written (dicts) or loaded (JSON)
            object.__setattr__(self, "slices", {k: SliceReport.load(v)
                                                for k, v in self.slices.items()})

    @property
    def overall(self) -> Optional[SliceReport]:
        return (self.slices or {}).get("overall")


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
    op_profile: Optional[dict] = None         # the int8 model's, tfx_qat.quant_lib.tflite.op_profile
    qat_report: Optional[dict] = None         # QuantizeTrainer's qat_report.json
