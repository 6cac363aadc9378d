"""Typed, validated, JSON-round-trippable configs: one per component.

Each config travels as a single TFX exec property (a JSON string). Validation happens in
``__post_init__`` so a bad value fails when the pipeline is *defined*, with a message that says
how to fix the call, not deep inside an executor.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Dict, Optional, Tuple, Type, TypeVar, Union

T = TypeVar("T", bound="_JsonConfig")
TASKS = ("multiclass", "binary", "regression")  # quant_lib.tasks decides which one a model has


class ConfigError(ValueError):
    """A config value is invalid; the message names the field and the fix."""


def _require(cond: bool, cls: str, field: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{cls}.{field}: {msg}")


@dataclasses.dataclass(frozen=True)
class _JsonConfig:
    """JSON round-trip for frozen dataclasses (nested configs and tuples included)."""

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: Type[T], data: Dict[str, Any]) -> T:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown field(s) {unknown}; valid fields are {sorted(fields)}")
        kwargs = {}
        for name, value in data.items():
            sub = _NESTED.get((cls.__name__, name))
            if sub is not None and isinstance(value, dict):
                value = _input_spec_class(value).from_dict(value) if sub is _INPUTS \
                    else sub.from_dict(value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls: Type[T], text: str) -> T:
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{cls.__name__}: config is not valid JSON ({e})") from e
        return cls.from_dict(data)


IMAGE_DTYPES = ("float32", "int64", "uint8")


@dataclasses.dataclass(frozen=True)
class DataSpec(_JsonConfig):
    """How a tf.Example maps to a model input: a fixed-length image feature and an int64 label.

    Images are stored flattened (``image_shape`` product values) as a float list, an int64 list
    or one bytes value of raw uint8 pixels (``image_dtype`` float32 / int64 / uint8; uint8
    records are ~4x smaller than float32 ones, and moving records is what ImportExampleGen and
    StatisticsGen spend their time on). The model sees ``value * image_scale`` as float32 (raw
    0..255 pixels want ``image_scale=1/255``, as the built-in Fashion-MNIST ingestion writes).
    """

    image_key: str = "image"
    label_key: str = "label"
    image_shape: Tuple[int, ...] = (28, 28, 1)
    num_classes: int = 10
    image_dtype: str = "float32"
    image_scale: float = 1.0
    adapter: str = "image"  # JSON tag: which input adapter reads the data

    def __post_init__(self):
        n = "DataSpec"
        _require(self.adapter == "image", n, "adapter", "is 'image' for a DataSpec")
        _require(bool(self.image_key), n, "image_key", "must be a non-empty feature name")
        _require(bool(self.label_key), n, "label_key", "must be a non-empty feature name")
        _require(self.image_key != self.label_key, n, "label_key", "must differ from image_key")
        shape = tuple(self.image_shape)
        _require(len(shape) == 3 and all(isinstance(d, int) and d > 0 for d in shape), n,
                 "image_shape", f"must be 3 positive ints (height, width, channels), got {shape}")
        object.__setattr__(self, "image_shape", shape)
        _require(isinstance(self.num_classes, int) and self.num_classes >= 2, n, "num_classes",
                 f"must be an int >= 2, got {self.num_classes!r}")
        _require(self.image_dtype in IMAGE_DTYPES, n, "image_dtype",
                 f"must be 'float32' (float_list), 'int64' (int64_list) or 'uint8' (bytes_list: "
                 f"one value of raw pixel bytes), got {self.image_dtype!r}")
        _require(isinstance(self.image_scale, (int, float)) and self.image_scale > 0, n,
                 "image_scale", f"must be > 0 (e.g. 1/255 for raw pixels), got {self.image_scale!r}")

    @property
    def flat_size(self) -> int:
        h, w, c = self.image_shape
        return h * w * c

    @property
    def raw_pixel_range(self) -> Optional[Tuple[float, float]]:
        """The float range 8-bit pixels (``image_dtype`` uint8) give the model, (0, 255 *
        image_scale): pinned as the int8 model's input range, so a raw pixel byte *is* its
        input (scale image_scale; zero point 0 for uint8 I/O, -128 for int8). None otherwise."""
        return (0.0, 255.0 * self.image_scale) if self.image_dtype == "uint8" else None


@dataclasses.dataclass(frozen=True)
class FeatureSpec(_JsonConfig):
    """Model inputs read the TFX way, for any Keras model: features come from the Examples through
    the schema (raw Examples plus the Transform graph, transformed Examples, or the records
    themselves) and are matched to the model's inputs **by name**, reshaped to the input's shape.

    ``label_key``: the label feature (raw or transformed name, e.g. "species" or "species_xf"),
    given once and used by all three components. ``task``: "multiclass" (class ids), "binary"
    (0/1, one sigmoid or logit unit) or "regression" (numbers); None reads it from the float
    model's training loss or an unambiguous head (see ``quant_lib.tasks``). ``num_classes``
    (multiclass): None reads it from the model's output width.
    """

    label_key: str = "label"
    num_classes: Optional[int] = None
    task: Optional[str] = None
    adapter: str = "features"  # JSON tag: which input adapter reads the data

    def __post_init__(self):
        n = "FeatureSpec"
        _require(isinstance(self.label_key, str) and bool(self.label_key), n, "label_key",
                 "must name the label feature, e.g. 'species'")
        _require(self.num_classes is None or (isinstance(self.num_classes, int) and
                                              self.num_classes >= 2), n, "num_classes",
                 f"must be None (read from the model) or an int >= 2, got {self.num_classes!r}")
        _require(self.task is None or self.task in TASKS, n, "task",
                 f"must be None (from the model) or one of {TASKS}, got {self.task!r}")
        _require(self.num_classes is None or self.task in (None, "multiclass"), n, "num_classes",
                 f"applies to multiclass models; leave it None for task={self.task!r}")
        _require(self.adapter == "features", n, "adapter", "is 'features' for a FeatureSpec")


InputSpec = Union[DataSpec, FeatureSpec]
_INPUTS = object()  # marker in _NESTED: a DataSpec or a FeatureSpec, told apart by 'adapter'


def _input_spec_class(d: Dict[str, Any]):
    kind = d.get("adapter", "image")
    if kind not in ("image", "features"):
        raise ConfigError(f"data.adapter: must be 'image' (DataSpec) or 'features' (FeatureSpec), "
                          f"got {kind!r}")
    return DataSpec if kind == "image" else FeatureSpec


def input_spec_from_json(text: str) -> "InputSpec":
    """A DataSpec or FeatureSpec from its JSON (the ``adapter`` tag tells which)."""
    d = json.loads(text)
    return _input_spec_class(d).from_dict(d)


def _check_inputs(value, cls: str) -> None:
    _require(isinstance(value, (DataSpec, FeatureSpec)), cls, "data",
             "must be a DataSpec (image input) or a FeatureSpec (features matched to model inputs "
             "by name)")


SCHEMES = ("default_8bit", "n_bit")
DISTRIBUTIONS = ("none", "mirrored", "multi_worker_mirrored")
TARGETS = ("cpu", "edgetpu")
# Search moves, cheapest first (quant_lib.search): 8-bit weights for the most sensitive layers of
# an n-bit model, per-channel weights where per-tensor was asked, twice the QAT epochs, and the
# most sensitive layers kept float in the TFLite model (CPU target only).
MOVES = ("int8_weights", "per_channel", "more_epochs", "float_fallback")


@dataclasses.dataclass(frozen=True)
class SearchConfig(_JsonConfig):
    """Accuracy-aware quantization (``QuantizationConfig.search``; off when None).

    QuantizeTrainer measures each weight layer's sensitivity (the int8 model's accuracy drop when
    only that layer is quantized) and, while the candidate misses ``max_accuracy_drop_pt`` (float
    minus int8 TFLite top-1 on ``validation_split``, percentage points), tries the allowed
    ``moves`` in order, at most ``max_trials`` trials in all; the first candidate within budget is
    kept. ``validation_split`` must be a split neither QAT nor the QuantEvaluator's gate uses, so
    the search cannot overfit the gate. ``target`` "edgetpu" refuses ``float_fallback``: the Edge
    TPU runs int8 ops only; ``moves`` None allows every move the target allows. ``strict``: refuse
    to search when the budget is below what the validation split can resolve (else a warning).
    A regression model's budget is ``max_mae_increase_pct`` (int8 MAE over float MAE, percent).
    ``ptq``: for an 8-bit configuration, post-training quantization of the float model (no
    training) is the first candidate; it is kept when within budget and at least as good as
    QAT as configured.
    """

    validation_split: str = "validation"
    validation_examples: int = 2000
    max_accuracy_drop_pt: float = 1.0
    target: str = "cpu"
    moves: Optional[Tuple[str, ...]] = None  # None: every move the target allows
    max_trials: int = 6
    strict: bool = False
    max_mae_increase_pct: float = 1.0
    ptq: bool = True

    def __post_init__(self):
        n = "SearchConfig"
        _require(isinstance(self.max_mae_increase_pct, (int, float)) and
                 self.max_mae_increase_pct >= 0, n, "max_mae_increase_pct",
                 f"must be >= 0 (percent of the float MAE), got {self.max_mae_increase_pct!r}")
        _require(isinstance(self.ptq, bool), n, "ptq", f"must be True or False, got {self.ptq!r}")
        _require(isinstance(self.validation_split, str) and bool(self.validation_split), n,
                 "validation_split", "must name an Examples split the gate does not use")
        _require(isinstance(self.validation_examples, int) and self.validation_examples >= 100, n,
                 "validation_examples", f"must be an int >= 100, got {self.validation_examples!r}")
        _require(isinstance(self.max_accuracy_drop_pt, (int, float)) and
                 0 <= self.max_accuracy_drop_pt <= 100, n, "max_accuracy_drop_pt",
                 f"must be in [0, 100] percentage points, got {self.max_accuracy_drop_pt!r}")
        _require(self.target in TARGETS, n, "target", f"must be one of {TARGETS}, got "
                 f"{self.target!r}")
        moves = tuple(self.moves) if self.moves is not None else tuple(
            m for m in MOVES if self.target == "cpu" or m != "float_fallback")
        _require(bool(moves) and all(m in MOVES for m in moves), n, "moves",
                 f"must be a non-empty list of {MOVES}, got {list(moves)}")
        _require(not (self.target == "edgetpu" and "float_fallback" in moves), n, "moves",  # asked
                 "'float_fallback' keeps layers float in the TFLite model, but the Edge TPU runs "
                 "int8 ops only (a float op runs on the CPU and splits the graph): drop "
                 "'float_fallback' from moves, or use target='cpu'")
        object.__setattr__(self, "moves", moves)
        _require(isinstance(self.strict, bool), n, "strict", f"must be True or False, got "
                 f"{self.strict!r}")
        _require(isinstance(self.max_trials, int) and self.max_trials >= 1, n, "max_trials",
                 f"must be an int >= 1 (trial 0 is the model as configured), got "
                 f"{self.max_trials!r}")


@dataclasses.dataclass(frozen=True)
class QuantizationConfig(_JsonConfig):
    """QuantizeTrainer: which layers to quantize, how, and the QAT fine-tuning.

    ``scheme``: "default_8bit" (TFMOT's default; int8 TFLite/Edge TPU) or "n_bit" (TFMOT's
    experimental scheme with ``weight_bits``/``activation_bits`` in 2..8; for accuracy studies — the
    TFLite export is still int8). ``per_tensor``: one weight scale per tensor instead of per output
    channel. ``keep_float_names`` / ``keep_float_regex`` / ``keep_float_types``: layers (by exact name,
    name regex, class name) left float in QAT (the converter still quantizes them post-training).
    ``int8_weight_names`` (scheme "n_bit"): layers quantized with 8-bit weights and activations
    (mixed precision). ``float_fallback_names``: layers kept float in QAT *and* in the TFLite model
    (float islands between int8 ops, which IntegerExporter accepts because they are listed; CPU
    targets only). ``search``: accuracy-aware quantization (``SearchConfig``). ``strict``: fail on the first layer the scheme cannot
    quantize instead of leaving it float. ``distribution``: tf.distribute strategy for QAT.
    ``model_fn``: the function in the Trainer module (``module_file``/``module_path``/``run_fn``'s
    module; a dotted name reaches into what it imports, e.g. TFX's MNIST module's
    ``base.build_keras_model``, or is a full ``package.module.fn`` path) that builds the untrained
    Keras model; needed to warm-start from a SavedModel written
    by ``tf.saved_model.save`` (no Keras metadata): the model is rebuilt and the Trainer's weights
    restored from its checkpoint. ``hparams_fn``: the module function returning the
    ``keras_tuner.HyperParameters`` ``model_fn`` takes when no ``hyperparameters`` channel is wired.
    ``model_fn_kwargs``: keyword arguments (JSON values) ``model_fn`` is called with — the ones the
    module's ``run_fn`` computes and passes (e.g. ``{"hidden_units": [16, 8]}``).
    """

    data: InputSpec = DataSpec()
    scheme: str = "default_8bit"
    weight_bits: int = 8
    activation_bits: int = 8
    per_tensor: bool = False
    keep_float_names: Tuple[str, ...] = ()
    keep_float_regex: Tuple[str, ...] = ()
    keep_float_types: Tuple[str, ...] = ()
    strict: bool = False
    int8_weight_names: Tuple[str, ...] = ()
    float_fallback_names: Tuple[str, ...] = ()
    search: Optional[SearchConfig] = None
    epochs: int = 1
    steps_per_epoch: Optional[int] = None  # None: one pass over the train split
    batch_size: int = 64
    learning_rate: float = 1e-4
    train_split: str = "train"
    distribution: str = "none"
    seed: int = 0
    model_fn: Optional[str] = None
    hparams_fn: Optional[str] = None
    model_fn_kwargs: Optional[Dict[str, Any]] = None

    def __post_init__(self):
        n = "QuantizationConfig"
        kw = self.model_fn_kwargs
        _require(kw is None or (isinstance(kw, dict) and all(
            isinstance(k, str) and k.isidentifier() for k in kw)), n, "model_fn_kwargs",
            f"must be a dict of keyword arguments of model_fn, e.g. {{'hidden_units': [16, 8]}}, "
            f"got {kw!r}")
        _require(kw is None or self.model_fn is not None, n, "model_fn_kwargs",
                 "are arguments of model_fn: set model_fn too")
        try:
            json.dumps(kw)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{n}.model_fn_kwargs: values must be JSON (numbers, strings, "
                              f"lists, dicts), got {kw!r} ({e})") from e
        _check_inputs(self.data, n)
        for f in ("model_fn", "hparams_fn"):
            v = getattr(self, f)
            _require(v is None or (isinstance(v, str) and all(
                p.isidentifier() for p in v.split("."))), n, f,
                f"must name a function of the Trainer module ('_make_keras_model', "
                f"'base.build_keras_model' for one it imports) or a full dotted path, got {v!r}")
        _require(self.scheme in SCHEMES, n, "scheme", f"must be one of {SCHEMES}, got {self.scheme!r}")
        for f in ("weight_bits", "activation_bits"):
            v = getattr(self, f)
            _require(isinstance(v, int) and 2 <= v <= 8, n, f, f"must be an int in 2..8, got {v!r}")
            _require(self.scheme == "n_bit" or v == 8, n, f,
                     f"is {v} but scheme='default_8bit' is 8-bit; set scheme='n_bit' for other widths")
        for f in ("keep_float_names", "keep_float_regex", "keep_float_types", "int8_weight_names",
                  "float_fallback_names"):
            v = tuple(getattr(self, f))
            _require(all(isinstance(x, str) and x for x in v), n, f,
                     "must be a list of non-empty strings")
            object.__setattr__(self, f, v)
        for pattern in self.keep_float_regex:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"{n}.keep_float_regex: {pattern!r} is not a valid regex ({e})")
        _require(not self.int8_weight_names or self.scheme == "n_bit", n, "int8_weight_names",
                 "raises layers to 8 bits within scheme='n_bit'; with default_8bit every layer is "
                 "8-bit already")
        _require(self.search is None or isinstance(self.search, SearchConfig), n, "search",
                 "must be None (off) or a SearchConfig")
        _require(self.search is None or self.search.validation_split != self.train_split, n,
                 "search", f"SearchConfig.validation_split must differ from train_split "
                 f"({self.train_split!r}): trials are compared on examples QAT does not train on")
        _require(self.search is None or self.distribution == "none", n, "search",
                 "runs its trials in one process; use distribution='none' with a search")
        if self.search is not None:
            useful = {"int8_weights": self.scheme == "n_bit" and self.weight_bits < 8,
                      "per_channel": self.per_tensor, "more_epochs": True, "float_fallback": True}
            _require(any(useful[m] for m in self.search.moves), n, "search",
                     f"SearchConfig.moves {list(self.search.moves)} change nothing here "
                     f"('int8_weights' needs scheme='n_bit' with weight_bits < 8, 'per_channel' "
                     f"needs per_tensor=True): add 'more_epochs' or 'float_fallback'")
        _require(isinstance(self.epochs, int) and self.epochs >= 1, n, "epochs",
                 f"must be an int >= 1 (QAT needs at least one epoch), got {self.epochs!r}")
        _require(self.steps_per_epoch is None or
                 (isinstance(self.steps_per_epoch, int) and self.steps_per_epoch >= 1), n,
                 "steps_per_epoch", "must be None (full pass) or an int >= 1")
        _require(isinstance(self.batch_size, int) and self.batch_size >= 1, n, "batch_size",
                 "must be an int >= 1")
        _require(isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1, n,
                 "learning_rate", f"must be in (0, 1); QAT fine-tuning typically uses 1e-4 to 1e-3, "
                 f"got {self.learning_rate!r}")
        _require(bool(self.train_split), n, "train_split", "must name an Examples split")
        _require(self.distribution in DISTRIBUTIONS, n, "distribution",
                 f"must be one of {DISTRIBUTIONS}, got {self.distribution!r}")


IO_TYPES = {"int8": ("int8", "uint8", "float32"), "int16x8": ("int16", "float32")}


@dataclasses.dataclass(frozen=True)
class ExportConfig(_JsonConfig):
    """IntegerExporter: full-integer TFLite conversion, its post-export validation, and Edge TPU.

    ``activations``: "int8" (default; int8 or uint8 I/O, or float32 I/O for an evaluation copy) or
    "int16x8" (experimental TFLite scheme: int16 activations, int8 weights; no Edge TPU).
    ``edgetpu``: run the static Edge TPU analyzer and, where ``edgetpu_compiler`` is found, compile.
    ``require_edgetpu``: fail the export unless the compiler ran and succeeded.
    ``metadata``: pack TFLite metadata (name, version, inputs and their normalization, labels)
    into the model, for the app team's clients; ``labels``: class names in class-id order (a
    binary head: negative, positive; default: the Transform's vocabulary of the label, else the
    class ids); ``model_name`` / ``description``: the metadata's (default: the pipeline's name,
    a generated description).
    """

    data: InputSpec = DataSpec()
    activations: str = "int8"
    inference_input_type: str = "int8"
    inference_output_type: str = "int8"
    representative_examples: int = 200
    representative_split: str = "train"
    parity_examples: int = 200
    parity_split: str = "eval"
    min_parity_agreement: float = 0.95
    edgetpu: bool = True
    edgetpu_compiler: Optional[str] = None  # None: look for edgetpu_compiler on PATH
    edgetpu_timeout_s: float = 180.0
    require_edgetpu: bool = False
    metadata: bool = True
    labels: Tuple[str, ...] = ()
    model_name: Optional[str] = None
    description: Optional[str] = None

    def __post_init__(self):
        n = "ExportConfig"
        object.__setattr__(self, "labels", tuple(self.labels))
        _require(all(isinstance(x, str) and x.strip() and "\n" not in x for x in self.labels)
                 and len(set(self.labels)) == len(self.labels), n, "labels",
                 f"must be distinct non-empty one-line class names, got {list(self.labels)}")
        _require(not self.labels or not isinstance(self.data, DataSpec) or
                 len(self.labels) == self.data.num_classes, n, "labels",
                 f"has {len(self.labels)} names for DataSpec.num_classes="
                 f"{getattr(self.data, 'num_classes', None)}: give one per class, in class-id order")
        _check_inputs(self.data, n)
        _require(self.activations in IO_TYPES, n, "activations",
                 f"must be one of {sorted(IO_TYPES)}, got {self.activations!r}")
        allowed = IO_TYPES.get(self.activations, ())
        for f in ("inference_input_type", "inference_output_type"):
            _require(getattr(self, f) in allowed, n, f,
                     f"must be one of {allowed} with activations={self.activations!r}, got "
                     f"{getattr(self, f)!r}")
        _require(isinstance(self.representative_examples, int) and self.representative_examples >= 1,
                 n, "representative_examples",
                 "must be an int >= 1: full-integer conversion needs calibration data (100-500 typical)")
        _require(isinstance(self.parity_examples, int) and self.parity_examples >= 0, n,
                 "parity_examples", "must be an int >= 0 (0 disables the parity check)")
        _require(isinstance(self.min_parity_agreement, (int, float)) and
                 0 <= self.min_parity_agreement <= 1, n, "min_parity_agreement",
                 "must be a fraction in [0, 1] of examples where Keras-QAT and TFLite top-1 agree")
        _require(bool(self.representative_split), n, "representative_split", "must name a split")
        _require(bool(self.parity_split), n, "parity_split", "must name a split")
        _require(isinstance(self.edgetpu_timeout_s, (int, float)) and self.edgetpu_timeout_s > 0, n,
                 "edgetpu_timeout_s", "must be > 0 seconds (the compiler's own default is 180)")
        _require(not (self.require_edgetpu and not self.edgetpu), n, "require_edgetpu",
                 "needs edgetpu=True")
        _require(not (self.require_edgetpu and self.activations != "int8"), n, "require_edgetpu",
                 "the Edge TPU runs int8 models only; use activations='int8'")


EVAL_METRICS = ("accuracy", "top_k_accuracy")


@dataclasses.dataclass(frozen=True)
class Threshold(_JsonConfig):
    """One gate on the int8 model, on one slice (or on every slice of a feature).

    ``slice``: () for the whole split, (("label", "3"),) for one slice, (("label", "*"),) for each
    value of the feature. Limits: ``max_drop_pt`` (float minus int8, percentage points),
    ``max_relative_drop`` (fraction of the float value), ``min_value`` (floor on the int8 value).
    """

    metric: str = "accuracy"
    slice: Tuple[Tuple[str, str], ...] = ()
    max_drop_pt: Optional[float] = None
    max_relative_drop: Optional[float] = None
    min_value: Optional[float] = None

    def __post_init__(self):
        n = "Threshold"
        _require(self.metric in EVAL_METRICS, n, "metric",
                 f"must be one of {EVAL_METRICS}, got {self.metric!r}")
        sl = tuple(tuple(x) for x in self.slice)
        _require(all(len(x) == 2 and all(isinstance(v, str) and v for v in x) for x in sl), n,
                 "slice", f"must be a list of [feature, value] pairs (value '*' = every value), "
                 f"got {self.slice!r}")
        object.__setattr__(self, "slice", sl)
        _require(any(v is not None for v in (self.max_drop_pt, self.max_relative_drop,
                                             self.min_value)), n, "max_drop_pt",
                 "set at least one of max_drop_pt, max_relative_drop, min_value")
        for f, lo, hi in (("max_drop_pt", 0, 100), ("max_relative_drop", 0, 1), ("min_value", 0, 1)):
            v = getattr(self, f)
            _require(v is None or (isinstance(v, (int, float)) and lo <= v <= hi), n, f,
                     f"must be in [{lo}, {hi}], got {v!r}")


@dataclasses.dataclass(frozen=True)
class EvalConfig(_JsonConfig):
    """QuantEvaluator: the split both models are scored on, and the typed gate.

    The blessing is decided by a ``tfma.EvalConfig`` (float = baseline, int8 = candidate): the
    component's ``eval_config``, else the one these fields build (``quant_lib.gate.from_typed``):
    ``max_accuracy_drop_pt`` (percentage points, float minus int8; a change threshold) and
    ``min_int8_accuracy`` (a value threshold) on the whole split; ``thresholds`` per-metric /
    per-slice gates; ``slicing_features`` are tf.Example features whose values define slices
    (e.g. "label"); ``tfma_metrics`` any TFMA/Keras metric class names computed alongside.
    ``max_regression_vs_baseline_pt``: the new int8 model's accuracy may fall at most this far
    below the deployed (latest blessed) int8 model's, scored in the same Beam job.
    ``min_int8_speedup``: the int8 model must run at least this many times the float
    reference's speed (``invoke()`` per example, 1 thread, interleaved passes on this machine;
    e.g. 1.0: never push an int8 model slower than float). Like the baseline check it works
    with an ``eval_config`` too. On a CPU without int8 dot-product instructions (``quant_lib.cpu``:
    no VNNI / dotprod) the ratio measured there cannot predict the app's device's, so it is
    recorded as "not measurable on this CPU" and does not block, unless ``speed_gate_any_cpu``.
    ``max_class_drop_pt``: tfx-qat's own guard beside any gate (None: off): no class (and no
    configured slice) may lose more than this many points of accuracy, judged on paired evidence
    (``quant_lib.paired``): ``class_drop_rule`` "harm" blocks where the data show a drop beyond
    it (Holm-corrected: a model without such harm is blocked with probability at most
    ``class_drop_alpha``), "strict" blesses only where every interval shows the drop within it.
    """

    data: InputSpec = DataSpec()
    eval_split: str = "eval"
    max_accuracy_drop_pt: float = 1.0
    min_int8_accuracy: float = 0.0
    thresholds: Tuple[Threshold, ...] = ()
    slicing_features: Tuple[str, ...] = ()
    top_k: int = 3
    batch_size: int = 256
    max_regression_vs_baseline_pt: Optional[float] = None
    tfma_metrics: Tuple[str, ...] = ()
    min_int8_speedup: Optional[float] = None
    speed_gate_any_cpu: bool = False
    max_class_drop_pt: Optional[float] = 2.0
    class_drop_rule: str = "harm"
    class_drop_alpha: float = 0.05

    def __post_init__(self):
        n = "EvalConfig"
        _require(self.max_class_drop_pt is None or (
            isinstance(self.max_class_drop_pt, (int, float)) and
            0 <= self.max_class_drop_pt <= 100), n, "max_class_drop_pt",
            f"must be None (guard off) or in [0, 100] points, got {self.max_class_drop_pt!r}")
        _require(self.class_drop_rule in ("harm", "strict"), n, "class_drop_rule",
                 f"must be 'harm' (block on evidence of harm) or 'strict' (bless only on "
                 f"evidence of no harm), got {self.class_drop_rule!r}")
        _require(isinstance(self.class_drop_alpha, float) and 0 < self.class_drop_alpha < 0.5,
                 n, "class_drop_alpha", f"must be in (0, 0.5), e.g. 0.05, got "
                 f"{self.class_drop_alpha!r}")
        _require(self.min_int8_speedup is None or (
            isinstance(self.min_int8_speedup, (int, float)) and self.min_int8_speedup > 0), n,
            "min_int8_speedup", "must be None (no speed check) or a ratio > 0, e.g. 1.0 (int8 at "
            f"least as fast as float), got {self.min_int8_speedup!r}")
        _require(isinstance(self.speed_gate_any_cpu, bool), n, "speed_gate_any_cpu",
                 "must be True (gate on this worker's speed, whatever its CPU) or False")
        _check_inputs(self.data, n)
        _require(bool(self.eval_split), n, "eval_split", "must name an Examples split")
        _require(isinstance(self.max_accuracy_drop_pt, (int, float)) and
                 0 <= self.max_accuracy_drop_pt <= 100, n, "max_accuracy_drop_pt",
                 f"must be in [0, 100] percentage points, got {self.max_accuracy_drop_pt!r}")
        _require(isinstance(self.min_int8_accuracy, (int, float)) and
                 0 <= self.min_int8_accuracy <= 1, n, "min_int8_accuracy",
                 f"must be a fraction in [0, 1] (e.g. 0.85), got {self.min_int8_accuracy!r}")
        ths = tuple(Threshold.from_dict(t) if isinstance(t, dict) else t for t in self.thresholds)
        _require(all(isinstance(t, Threshold) for t in ths), n, "thresholds",
                 "must be a list of Threshold")
        object.__setattr__(self, "thresholds", ths)
        feats = tuple(self.slicing_features)
        _require(all(isinstance(f, str) and f for f in feats), n, "slicing_features",
                 "must be a list of feature names")
        object.__setattr__(self, "slicing_features", feats)
        for t in ths:
            for feat, _ in t.slice:
                _require(feat in feats, n, "thresholds",
                         f"threshold on slice feature {feat!r} needs it in slicing_features "
                         f"(now {list(feats)})")
        # FeatureSpec without num_classes: the evaluator caps top_k at the model's classes - 1.
        classes = self.data.num_classes or float("inf")
        _require(isinstance(self.top_k, int) and 1 <= self.top_k < classes, n,
                 "top_k", f"must be an int in [1, num_classes), got {self.top_k!r}")
        _require(isinstance(self.batch_size, int) and self.batch_size >= 1, n, "batch_size",
                 "must be an int >= 1")
        tm = tuple(self.tfma_metrics)
        _require(all(isinstance(m, str) and m.isidentifier() for m in tm), n, "tfma_metrics",
                 "must be a list of TFMA/Keras metric class names, e.g. "
                 "['SparseTopKCategoricalAccuracy', 'ExampleCount']")
        object.__setattr__(self, "tfma_metrics", tm)
        _require(self.max_regression_vs_baseline_pt is None or
                 (isinstance(self.max_regression_vs_baseline_pt, (int, float)) and
                  0 <= self.max_regression_vs_baseline_pt <= 100), n,
                 "max_regression_vs_baseline_pt",
                 "must be None (no baseline check) or in [0, 100] percentage points")


_NESTED = {
    ("QuantizationConfig", "data"): _INPUTS,
    ("QuantizationConfig", "search"): SearchConfig,
    ("ExportConfig", "data"): _INPUTS,
    ("EvalConfig", "data"): _INPUTS,
}
