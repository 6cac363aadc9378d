"""QuantizeTrainer's config: the QAT scheme, training, distribution, target, and the optional
accuracy-aware search."""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Dict, Optional, Tuple

from tfx_qat.quant_lib.config import base
from tfx_qat.quant_lib.config.data import (DataSpec, InputSpec, check_inputs,
                                             input_spec_from_dict)


SCHEMES = ("default_8bit", "n_bit")


DISTRIBUTIONS = ("none", "mirrored", "multi_worker_mirrored")


TARGETS = ("cpu", "edgetpu")


# Search moves, cheapest first (tfx_qat.quant_lib.search.search): 8-bit weights for the most sensitive layers of
# an n-bit model, per-channel weights where per-tensor was asked, twice the QAT epochs, and the
# most sensitive layers kept float in the TFLite model (CPU target only).
MOVES = ("int8_weights", "per_channel", "more_epochs", "float_fallback")


@dataclasses.dataclass(frozen=True)
class SearchConfig(base.JsonConfig):
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
        base.require(isinstance(self.max_mae_increase_pct, (int, float)) and
                 self.max_mae_increase_pct >= 0, n, "max_mae_increase_pct",
                 f"must be >= 0 (percent of the float MAE), got {self.max_mae_increase_pct!r}")
        base.require(isinstance(self.ptq, bool), n, "ptq", f"must be True or False, got {self.ptq!r}")
        base.require(isinstance(self.validation_split, str) and bool(self.validation_split), n,
                 "validation_split", "must name an Examples split the gate does not use")
        base.require(isinstance(self.validation_examples, int) and self.validation_examples >= 100, n,
                 "validation_examples", f"must be an int >= 100, got {self.validation_examples!r}")
        base.require(isinstance(self.max_accuracy_drop_pt, (int, float)) and
                 0 <= self.max_accuracy_drop_pt <= 100, n, "max_accuracy_drop_pt",
                 f"must be in [0, 100] percentage points, got {self.max_accuracy_drop_pt!r}")
        base.require(self.target in TARGETS, n, "target", f"must be one of {TARGETS}, got "
                 f"{self.target!r}")
        moves = tuple(self.moves) if self.moves is not None else tuple(
            m for m in MOVES if self.target == "cpu" or m != "float_fallback")
        base.require(bool(moves) and all(m in MOVES for m in moves), n, "moves",
                 f"must be a non-empty list of {MOVES}, got {list(moves)}")
        base.require(not (self.target == "edgetpu" and "float_fallback" in moves), n, "moves",  # asked
                 "'float_fallback' keeps layers float in the TFLite model, but the Edge TPU runs "
                 "int8 ops only (a float op runs on the CPU and splits the graph): drop "
                 "'float_fallback' from moves, or use target='cpu'")
        object.__setattr__(self, "moves", moves)
        base.require(isinstance(self.strict, bool), n, "strict", f"must be True or False, got "
                 f"{self.strict!r}")
        base.require(isinstance(self.max_trials, int) and self.max_trials >= 1, n, "max_trials",
                 f"must be an int >= 1 (trial 0 is the model as configured), got "
                 f"{self.max_trials!r}")


@dataclasses.dataclass(frozen=True)
class QuantizationConfig(base.JsonConfig):
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

    @classmethod
    def nested(cls):
        return {"data": input_spec_from_dict, "search": SearchConfig.from_dict}

    def __post_init__(self):
        n = "QuantizationConfig"
        kw = self.model_fn_kwargs
        base.require(kw is None or (isinstance(kw, dict) and all(
            isinstance(k, str) and k.isidentifier() for k in kw)), n, "model_fn_kwargs",
            f"must be a dict of keyword arguments of model_fn, e.g. {{'hidden_units': [16, 8]}}, "
            f"got {kw!r}")
        base.require(kw is None or self.model_fn is not None, n, "model_fn_kwargs",
                 "are arguments of model_fn: set model_fn too")
        try:
            json.dumps(kw)
        except (TypeError, ValueError) as e:
            raise base.ConfigError(f"{n}.model_fn_kwargs: values must be JSON (numbers, strings, "
                              f"lists, dicts), got {kw!r} ({e})") from e
        check_inputs(self.data, n)
        for f in ("model_fn", "hparams_fn"):
            v = getattr(self, f)
            base.require(v is None or (isinstance(v, str) and all(
                p.isidentifier() for p in v.split("."))), n, f,
                f"must name a function of the Trainer module ('_make_keras_model', "
                f"'base.build_keras_model' for one it imports) or a full dotted path, got {v!r}")
        base.require(self.scheme in SCHEMES, n, "scheme", f"must be one of {SCHEMES}, got {self.scheme!r}")
        for f in ("weight_bits", "activation_bits"):
            v = getattr(self, f)
            base.require(isinstance(v, int) and 2 <= v <= 8, n, f, f"must be an int in 2..8, got {v!r}")
            base.require(self.scheme == "n_bit" or v == 8, n, f,
                     f"is {v} but scheme='default_8bit' is 8-bit; set scheme='n_bit' for other widths")
        for f in ("keep_float_names", "keep_float_regex", "keep_float_types", "int8_weight_names",
                  "float_fallback_names"):
            v = tuple(getattr(self, f))
            base.require(all(isinstance(x, str) and x for x in v), n, f,
                     "must be a list of non-empty strings")
            object.__setattr__(self, f, v)
        for pattern in self.keep_float_regex:
            try:
                re.compile(pattern)
            except re.error as e:
                raise base.ConfigError(f"{n}.keep_float_regex: {pattern!r} is not a valid regex ({e})")
        base.require(not self.int8_weight_names or self.scheme == "n_bit", n, "int8_weight_names",
                 "raises layers to 8 bits within scheme='n_bit'; with default_8bit every layer is "
                 "8-bit already")
        base.require(self.search is None or isinstance(self.search, SearchConfig), n, "search",
                 "must be None (off) or a SearchConfig")
        base.require(self.search is None or self.search.validation_split != self.train_split, n,
                 "search", f"SearchConfig.validation_split must differ from train_split "
                 f"({self.train_split!r}): trials are compared on examples QAT does not train on")
        base.require(self.search is None or self.distribution == "none", n, "search",
                 "runs its trials in one process; use distribution='none' with a search")
        if self.search is not None:
            useful = {"int8_weights": self.scheme == "n_bit" and self.weight_bits < 8,
                      "per_channel": self.per_tensor, "more_epochs": True, "float_fallback": True}
            base.require(any(useful[m] for m in self.search.moves), n, "search",
                     f"SearchConfig.moves {list(self.search.moves)} change nothing here "
                     f"('int8_weights' needs scheme='n_bit' with weight_bits < 8, 'per_channel' "
                     f"needs per_tensor=True): add 'more_epochs' or 'float_fallback'")
        base.require(isinstance(self.epochs, int) and self.epochs >= 1, n, "epochs",
                 f"must be an int >= 1 (QAT needs at least one epoch), got {self.epochs!r}")
        base.require(self.steps_per_epoch is None or
                 (isinstance(self.steps_per_epoch, int) and self.steps_per_epoch >= 1), n,
                 "steps_per_epoch", "must be None (full pass) or an int >= 1")
        base.require(isinstance(self.batch_size, int) and self.batch_size >= 1, n, "batch_size",
                 "must be an int >= 1")
        base.require(isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1, n,
                 "learning_rate", f"must be in (0, 1); QAT fine-tuning typically uses 1e-4 to 1e-3, "
                 f"got {self.learning_rate!r}")
        base.require(bool(self.train_split), n, "train_split", "must name an Examples split")
        base.require(self.distribution in DISTRIBUTIONS, n, "distribution",
                 f"must be one of {DISTRIBUTIONS}, got {self.distribution!r}")
