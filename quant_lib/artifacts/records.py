"""What tfx-qat records on each artifact it writes, as MLMD custom properties: one typed record
per artifact, the only place a property's name is spelled. Writers build the record (a
misspelled field is a TypeError where it is written), readers get it back with
``from_properties`` (typed: JSON lists decoded, 0/1 as bool); ``unknown`` lists properties no
record names, which the tests of a real store require to be TFX's own. ``of_node`` reads a
record off an MLMD Artifact/Execution proto (duck-typed: quant_lib does not import MLMD)."""
from __future__ import annotations

import dataclasses
import functools
import json
import typing
from typing import Any, Dict, List, Mapping, Optional

# Properties TFX writes on every artifact itself (not tfx-qat's).
TFX_PROPERTIES = frozenset({"name", "producer_component", "state", "tfx_version",
                            "is_external", "pipeline_name", "span", "version", "split_names"})


@dataclasses.dataclass(frozen=True)
class Record:
    """Base of the artifact records: every field is optional (None: not recorded)."""

    @classmethod
    def names(cls) -> List[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_properties(self) -> Dict[str, Any]:
        """The recorded values (None left out): ints, floats, strings, lists/dicts as they are
        (tfx_qat.components.utils.set_properties writes those as JSON)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_properties(cls, props: Mapping[str, Any]):
        values = {}
        for name, kind in _kinds(cls):
            v = props.get(name)
            if v is None:
                continue
            if kind in (list, dict) and isinstance(v, str):
                v = json.loads(v) if v else kind()
            elif kind is bool:
                v = bool(int(v))
            elif kind is float:
                v = float(v)
            elif kind is int:  # KFP's artifact metadata carries every number as a float
                v = int(v)
            values[name] = v
        return cls(**values)

    @classmethod
    def unknown(cls, props: Mapping[str, Any]) -> List[str]:
        """Properties on the artifact that neither this record nor TFX names."""
        return sorted(set(props) - set(cls.names()) - TFX_PROPERTIES)

    def merged(self, other: "Record"):
        """This record with ``other``'s recorded (non-None) fields on top."""
        return dataclasses.replace(self, **{k: v for k, v in dataclasses.asdict(other).items()
                                            if v is not None and k in self.names()})


STRUCT_SINGLE_VALUE_KEY = "__value__"  # how TFX's Artifact wraps a non-dict JSON value
# How Kubeflow Pipelines v2's launcher stores a list or struct metadata value in MLMD.
KFP_WRAPPERS = {"list", "struct"}


def node_properties(node) -> Dict[str, Any]:
    """An MLMD Artifact/Execution proto's properties and custom properties as plain values.
    Kubeflow V2 hands artifacts from task to task as JSON metadata, which TFX's entrypoint turns
    back into struct values (``{"__value__": v}``, numbers as floats): those are unwrapped here."""
    from google.protobuf import json_format
    out = {}
    for props in (node.properties, node.custom_properties):
        for k, v in props.items():
            kind = v.WhichOneof("value")
            value = None if kind is None else getattr(v, kind)
            if kind == "struct_value":
                value = json_format.MessageToDict(value)
                if len(value) == 1 and set(value) & KFP_WRAPPERS:  # KFP's, around TFX's
                    value = next(iter(value.values()))
                if isinstance(value, dict):
                    value = value.get(STRUCT_SINGLE_VALUE_KEY, value)
            out[k] = value
    return out


def of_node(node, record_type):
    """``record_type`` read off an MLMD proto, or a TFX artifact (its ``mlmd_artifact``); the
    empty record for None (a run without that artifact)."""
    if node is None:
        return record_type()
    return record_type.from_properties(node_properties(getattr(node, "mlmd_artifact", node)))


@functools.lru_cache(maxsize=None)
def _kinds(cls) -> tuple:
    """(field name, value type) of a record class, resolved once (type hints are slow)."""
    hints = typing.get_type_hints(cls)
    return tuple((name, _kind(hints[name])) for name in cls.names())


def _kind(hint) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = typing.get_origin(args[0]) if args else None
    return base or (args[0] if args else hint)


@dataclasses.dataclass(frozen=True)
class Task(Record):
    """The model's task, recorded on the QAT and the int8 model (what the evaluator scores)."""

    task: Optional[str] = None           # multiclass | binary | regression
    from_logits: Optional[bool] = None


@dataclasses.dataclass(frozen=True)
class QatModel(Task):
    """QuantizeTrainer's ``qat_model``: how QAT ran and on which float model."""

    qat_scheme: Optional[str] = None
    per_tensor: Optional[bool] = None    # IntegerExporter converts a per-tensor model per-tensor
    quantized_layers: Optional[int] = None
    folded_layers: Optional[int] = None
    float_layers: Optional[int] = None
    float_layer_names: Optional[List[str]] = None
    float_fallback_layers: Optional[List[str]] = None  # float islands the exporter accepts
    int8_weight_layers: Optional[List[str]] = None
    qat_seconds_per_step: Optional[float] = None
    qat_train_metric: Optional[str] = None  # accuracy | mae
    qat_final_train_value: Optional[float] = None
    float_model_source: Optional[str] = None  # keras (loaded) | rebuilt (model_fn + checkpoint)
    restore_max_abs_diff: Optional[float] = None
    float_keras_model: Optional[str] = None  # a rebuilt float model's Keras copy (float TFLite)
    search_status: Optional[str] = None
    search_reason: Optional[str] = None
    search_trials: Optional[int] = None
    search_chosen_trial: Optional[int] = None
    search_validation_split: Optional[str] = None
    search_budget_pt: Optional[float] = None
    search_float_accuracy: Optional[float] = None  # the search metric's value (MAE: regression)
    search_int8_accuracy: Optional[float] = None
    search_resolution_pt: Optional[float] = None  # smallest drop the validation split resolves
    search_warning: Optional[str] = None  # the budget is below that resolution
    search_metric: Optional[str] = None   # accuracy (drops in pt) | mae (increase in %)
    int8_method: Optional[str] = None     # qat | ptq (the search kept post-training quantization)
    search_trial_table: Optional[List[list]] = None  # [index, move, change, acc, bytes, within]
    sensitivity_ranking: Optional[List[list]] = None  # [layer, drop_pt]


@dataclasses.dataclass(frozen=True)
class Int8Model(Task):
    """IntegerExporter's ``quantized_model``: the verified int8 TFLite model."""

    int8_tflite_bytes: Optional[int] = None
    float_tflite_bytes: Optional[int] = None
    integer_validated: Optional[bool] = None
    float_island_ops: Optional[int] = None  # ops of listed float islands
    activations: Optional[str] = None
    input_dtype: Optional[str] = None
    op_counts: Optional[Dict[str, int]] = None
    input_contract: Optional[List[dict]] = None  # [{name, dtype, shape, scale, zero_point,
    #                                               client_feeds (8-bit pixels)}]
    parity_top1_agreement: Optional[float] = None
    parity_near_ties: Optional[int] = None  # disagreements the Keras model scores as near ties
    parity_examples: Optional[int] = None
    parity_max_abs_error: Optional[float] = None
    parity_rule: Optional[str] = None
    edgetpu_predicted_ops_on_tpu: Optional[int] = None
    edgetpu_predicted_ops_on_cpu: Optional[int] = None
    edgetpu_predicted_first_unmapped: Optional[str] = None
    edgetpu_compiler_status: Optional[str] = None  # compiled|not_available|failed|timeout|skipped
    edgetpu_compiler_message: Optional[str] = None
    edgetpu_compiler_version: Optional[str] = None
    edgetpu_ops_on_tpu: Optional[int] = None
    edgetpu_ops_on_cpu: Optional[int] = None
    edgetpu_subgraphs: Optional[int] = None
    edgetpu_on_chip_bytes: Optional[int] = None
    edgetpu_off_chip_bytes: Optional[int] = None
    edgetpu_tflite_bytes: Optional[int] = None
    metadata_writer: Optional[str] = None   # image_classifier | generic | none (ExportConfig)
    metadata_bytes: Optional[int] = None    # what the packed metadata and labels add to the file
    metadata_limits: Optional[List[str]] = None  # what the metadata or its clients cannot take
    labels: Optional[List[str]] = None      # class names in class-id order (labels.txt)
    labels_source: Optional[str] = None     # ExportConfig.labels | Transform vocabulary | ids


@dataclasses.dataclass(frozen=True)
class Evaluation(Record):
    """QuantEvaluator's ``evaluation``: float and int8 scored on the same split."""

    task: Optional[str] = None
    eval_examples: Optional[int] = None
    float_accuracy: Optional[float] = None   # classifiers
    int8_accuracy: Optional[float] = None
    float_correct: Optional[int] = None      # exact: MLMD keeps ~6 significant digits
    int8_correct: Optional[int] = None
    int8_top1_ties: Optional[int] = None     # outputs whose top int8 score two classes share
    accuracy_delta_pt: Optional[float] = None
    float_mae: Optional[float] = None        # regression
    int8_mae: Optional[float] = None
    validation_failures: Optional[int] = None
    int8_latency_ms: Optional[float] = None  # invoke() on latency_runtime, 1 thread, batch 1
    float_latency_ms: Optional[float] = None
    latency_runtime: Optional[str] = None    # "LiteRT 2.3.0": these two and the speed gate's
    tf_int8_latency_ms: Optional[float] = None  # the same on TF's tf.lite.Interpreter
    tf_float_latency_ms: Optional[float] = None
    tf_runtime: Optional[str] = None         # "TF Lite (TensorFlow 2.16.2)"
    int8_runtimes_max_abs_diff: Optional[float] = None  # |LiteRT - TF| raw int8 outputs (steps)
    int8_xnnpack: Optional[str] = None       # ops delegated, partitions, builtin rest
    float_xnnpack: Optional[str] = None
    latency_cpu: Optional[str] = None        # tfx_qat.quant_lib.tflite.cpu: model and int8 dot-product ISA
    latency_int8_dot: Optional[bool] = None  # the CPU has int8 dot products (None: unknown)
    speed_gate: Optional[str] = None         # min_int8_speedup: passed / failed / not measurable
    report_status: Optional[str] = None      # written | failed: <error>

    @property
    def headline(self) -> Dict[str, Optional[float]]:
        """float / int8 / int8-minus-float of the task's headline metric (accuracy from the
        exact counts, else MAE), for tables across runs."""
        n = self.eval_examples
        if self.float_correct is not None and n:
            f, i = self.float_correct / n, self.int8_correct / n
            return {"metric": "accuracy", "float": f, "int8": i, "delta": i - f}
        if self.float_mae is not None:
            return {"metric": "mae", "float": self.float_mae, "int8": self.int8_mae,
                    "delta": self.int8_mae - self.float_mae}
        return {"metric": None, "float": None, "int8": None, "delta": None}


@dataclasses.dataclass(frozen=True)
class Blessing(Evaluation):
    """QuantEvaluator's ``blessing``: the decision the (Verified)Pusher reads."""

    blessed: Optional[bool] = None           # written 1/0: the key the stock Pusher checks
    blessing_reasons: Optional[List[str]] = None
    current_model: Optional[str] = None      # the int8 model's uri and id
    current_model_id: Optional[int] = None
    int8_sha256: Optional[str] = None        # the evaluated bytes, checked again at push
    baseline_check: Optional[str] = None     # passed | failed | skipped: why
    baseline_int8_accuracy: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Pushed(Record):
    """(Verified)Pusher's ``pushed_model``: TFX Pusher's properties and the pushed bytes' hash."""

    pushed: Optional[bool] = None
    pushed_destination: Optional[str] = None
    pushed_version: Optional[str] = None
    pushed_sha256: Optional[str] = None


RECORDS = {"QatModel": QatModel, "Int8Model": Int8Model, "Evaluation": Evaluation,
           "Blessing": Blessing, "Pushed": Pushed}
