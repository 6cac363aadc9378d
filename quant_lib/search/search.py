"""Accuracy-aware quantization: a search for the smallest, most integer model within the gate's
budget, most sensitive layers first (``sensitivity``).

For an 8-bit configuration, PTQ of the float model comes first and is kept when within budget
and at least as good as the next trial, the model as configured; while a candidate misses the
budget the allowed moves are tried in order (``config.MOVES``), the most sensitive layers first
(1, 2, 4... of them); each trial is QAT, full-integer conversion and a TFLite score on the
validation split (never the gate's split). The first trial within budget ends the moves; when
it raised several layers, the search steps back (bisects between the most layers that missed
and these; at most log2 of the gap more trials, beyond ``max_trials``) and keeps the smallest
model that stays within budget."""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfx_qat.quant_lib.artifacts.report_files import Trial, TrialEdgeTpu
from tfx_qat.quant_lib.config import QuantizationConfig
from tfx_qat.quant_lib.evaluation.latency import latency_ms
from tfx_qat.quant_lib.search import sensitivity
from tfx_qat.quant_lib.search.sensitivity import SearchData
from tfx_qat.quant_lib.tflite import convert, interpreter, validate


log = logging.getLogger(__name__)


WITHIN, NO_CANDIDATE = "within_budget", "no_candidate_within_budget"


@dataclasses.dataclass
class SearchResult:
    """What the search tried and why it chose; ``to_properties()`` for the qat_model artifact."""

    budget_pt: float
    target: str
    validation_split: str
    examples: int
    float_accuracy: float
    sensitivity: List[sensitivity.LayerSensitivity]
    trials: List[Trial]
    chosen: int  # the trial kept: the first within budget, else the best one
    status: str  # WITHIN | NO_CANDIDATE
    reason: str
    seconds: float
    resolution_pt: Optional[float] = None  # the smallest drop this validation split resolves
    warning: Optional[str] = None  # the budget is below that resolution
    metric: str = "accuracy"  # accuracy (drops in pt) | mae (increases in % of the float MAE)

    def to_properties(self):
        from tfx_qat.quant_lib.artifacts import records
        t = self.trials[self.chosen]
        return records.QatModel(
            search_status=self.status, search_reason=self.reason,
            search_trials=len(self.trials), search_chosen_trial=self.chosen,
            search_validation_split=self.validation_split, search_budget_pt=float(self.budget_pt),
            search_float_accuracy=self.float_accuracy, search_int8_accuracy=t.accuracy,
            search_resolution_pt=self.resolution_pt, search_warning=self.warning,
            search_metric=self.metric, int8_method="ptq" if t.move == "ptq" else "qat",
            search_trial_table=[[x.index, x.move, x.change, round(x.accuracy, 6), x.int8_bytes,
                                 int(x.within_budget)] for x in self.trials],
            sensitivity_ranking=[[s.name, round(s.drop_pt, 4)] for s in self.sensitivity])

    def report(self) -> Dict[str, object]:
        return {"status": self.status, "reason": self.reason, "budget_pt": self.budget_pt,
                "target": self.target, "validation_split": self.validation_split,
                "examples": self.examples, "float_accuracy": self.float_accuracy,
                "chosen": self.chosen, "seconds": self.seconds,
                "resolution_pt": self.resolution_pt, "warning": self.warning,
                "metric": self.metric,
                "sensitivity": [dataclasses.asdict(s) for s in self.sensitivity],
                "trials": [dataclasses.asdict(t) for t in self.trials]}


def _doubling(n: int) -> List[int]:
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n] if n else []


def _layer_change(cfg: QuantizationConfig, move: str, todo: List[str], k: int) -> Tuple[str, dict]:
    """(what changed, QuantizationConfig changes) with the first ``k`` of ``todo`` raised."""
    if move == "int8_weights":
        return (f"8-bit weights: {', '.join(todo[:k])}",
                {"int8_weight_names": tuple(cfg.int8_weight_names) + tuple(todo[:k])})
    return (f"float: {', '.join(todo[:k])}",
            {"float_fallback_names": tuple(cfg.float_fallback_names) + tuple(todo[:k])})


def candidates(cfg: QuantizationConfig, ranked: List[str]):
    """(move, what changed, QuantizationConfig changes, (layers in order, how many raised) for
    a per-layer move else None), cheapest first. Each move starts from the configured model;
    within a move the most sensitive 1, 2, 4... layers are changed."""
    yield "as configured", "-", {}, None
    for move in cfg.search.moves:
        todo = None
        if move == "int8_weights" and cfg.scheme == "n_bit" and cfg.weight_bits < 8:
            todo = [n for n in ranked if n not in cfg.int8_weight_names]
        elif move == "float_fallback" and cfg.search.target == "cpu":
            todo = [n for n in ranked if n not in cfg.float_fallback_names]
        elif move == "per_channel" and cfg.per_tensor:
            yield move, "per-channel weights", {"per_tensor": False}, None
        elif move == "more_epochs":
            yield move, f"{2 * cfg.epochs} QAT epochs", {"epochs": 2 * cfg.epochs}, None
        for k in _doubling(len(todo)) if todo else []:
            yield (move, *_layer_change(cfg, move, todo, k), (todo, k))


def run(model, cfg: QuantizationConfig, train: Callable[[QuantizationConfig], tuple],
        data: SearchData, progress: Callable[[str], None] = log.info,
        observe: Optional[Callable[[Trial, bytes], None]] = None):
    """The search. ``train(cfg)`` runs QAT from a fresh copy of the float model and returns
    ``run_qat``'s (qat_model, decisions, stats); ``observe(trial, tflite bytes)`` sees each
    trial (make bench scores them on the test split). Returns (qat_model, decisions, stats,
    the trial's QuantizationConfig, SearchResult) of the chosen trial."""
    t_start = time.perf_counter()
    labels = data.labels
    s = cfg.search
    metric = sensitivity.Metric.of(data.task, s)
    float_v = metric.per_example(model.predict(data.keras_x, batch_size=256, verbose=0), labels)
    float_acc = float(np.mean(float_v))
    resolution, warning = _resolution_warning(s, metric, labels, float_acc, progress)
    ranked = sensitivity.sensitivity(model, cfg, data, progress, metric)
    trials = _Trials(cfg, train, metric, data, float_v, _Hooks(progress, observe))
    chosen, refined_from = _walk(model, cfg, ranked, trials)
    if chosen is not None:
        index, trained, trial_cfg = chosen
        status = WITHIN
        reason = _within_reason(trials.done, index, refined_from, metric, float_acc,
                                s.validation_split)
        plain = _no_mix(trial_cfg, cfg, ranked)
        if plain:
            reason = f"{plain}; {reason}"
    else:
        _, index, trained, trial_cfg = trials.best
        status = NO_CANDIDATE
        field = "max_accuracy_drop_pt" if metric.name == "accuracy" else "max_mae_increase_pct"
        reason = (f"no candidate within {metric.budget} {metric.unit} after {len(trials.done)} "
                  f"trial(s) (best: trial {index}, {trials.done[index].drop_pt:+.2f} "
                  f"{metric.unit}); raise SearchConfig.{field} or max_trials, or allow more moves")
    result = SearchResult(metric.budget, s.target, s.validation_split, len(labels),
                          float_acc, ranked, trials.done, index, status, reason,
                          time.perf_counter() - t_start, resolution, warning, metric.name)
    progress(f"search: {reason}")
    return (*trained, trial_cfg, result)


def _resolution_warning(s, metric, labels, float_acc, progress):
    """What the validation split resolves, and the warning (or, strict, the error) when the
    budget is finer than that."""
    if metric.name != "accuracy":
        progress(f"search: float MAE {float_acc:.4g} on {len(labels)} {s.validation_split!r} "
                 f"examples; budget +{s.max_mae_increase_pct} % MAE; target {s.target}")
        return None, None
    resolution = sensitivity.resolution_pt(len(labels), float_acc)
    progress(f"search: float top-1 {float_acc:.4f} on {len(labels)} {s.validation_split!r} "
             f"examples (resolves drops of about {resolution:.2f} pt); budget "
             f"{s.max_accuracy_drop_pt} pt; target {s.target}")
    if s.max_accuracy_drop_pt >= resolution:
        return resolution, None
    warning = (f"the budget of {s.max_accuracy_drop_pt} pt is below what {len(labels)} "
               f"{s.validation_split!r} examples resolve (~{resolution:.2f} pt at float top-1 "
               f"{float_acc:.4f}; one example is {100 / len(labels):.2f} pt): trials that "
               f"differ by less are within noise. The budget needs about "
               f"{sensitivity.examples_needed(s.max_accuracy_drop_pt, float_acc):,} validation examples")
    if s.strict:
        raise sensitivity.SearchError(f"SearchConfig.strict=True: {warning}; give the search a larger "
                          "validation split or raise SearchConfig.max_accuracy_drop_pt")
    log.warning("search: %s", warning)
    progress(f"search: WARNING {warning}")
    return resolution, warning


class _Hooks(NamedTuple):
    progress: Callable[[str], None]
    observe: Optional[Callable[[Trial, bytes], None]]


class _Trials:
    """Runs and records trials: train (unless given), convert, validate, score on validation."""

    def __init__(self, cfg, train, metric, data: SearchData, float_v, hooks: _Hooks):
        self.cfg, self.train, self.metric = cfg, train, metric
        self.features, self.labels, self.float_v = data.features, data.labels, float_v
        self.representative = data.representative
        self.progress, self.observe = hooks
        self.done: List[Trial] = []
        self.best = None  # (drop, index, trained, trial cfg)

    def attempt(self, move, change, changes, trained=None):
        t0 = time.perf_counter()
        trial_cfg = dataclasses.replace(self.cfg, **changes)
        trained = trained or self.train(trial_cfg)
        data = convert.convert_int8(trained[0], self.representative,
                                   per_channel=not trial_cfg.per_tensor,
                                   float_layers=trial_cfg.float_fallback_names)
        report = validate.validate_integer(data, float_layers=trial_cfg.float_fallback_names)
        trial_v = self.metric.per_example(interpreter.TFLiteClassifier(data).predict(self.features),
                                          self.labels)
        acc = float(np.mean(trial_v))
        drop, low, high = self.metric.drop(self.float_v, trial_v)
        one = {k: v[:20] for k, v in self.features.items()}
        trial = Trial(len(self.done), move, change, acc, drop, len(data), latency_ms(data, one),
                      report.float_ops, drop <= self.metric.budget,
                      time.perf_counter() - t0, {k: list(v) if isinstance(v, tuple) else v
                                                 for k, v in changes.items()},
                      _edgetpu(data) if self.cfg.search.target == "edgetpu" else None, low, high)
        self.done.append(trial)
        if self.observe is not None:
            self.observe(trial, data)
        self.progress(f"search trial {trial.index} ({move}: {change}): int8 {self.metric.name} "
                      f"{acc:.4g} (drop {drop:+.2f} {self.metric.unit}, 95% [{low:+.2f}, "
                      f"{high:+.2f}]), {len(data)} bytes, {trial.seconds:.0f}s"
                      + (" -> within budget" if trial.within_budget else ""))
        if self.best is None or drop < self.best[0]:
            self.best = (drop, trial.index, trained, trial_cfg)
        return trial, (trial.index, trained, trial_cfg)


def _walk(model, cfg, ranked, trials: "_Trials"):
    """PTQ first (8-bit plans), then the candidate moves in order until one is within budget;
    a per-layer move within budget is refined by bisection towards fewer raised layers.
    Returns (the chosen (index, trained, cfg) or None, the trial refined from or None)."""
    refined_from = ptq = chosen = None
    missed: Dict[str, int] = {}  # per-layer move -> most layers raised in a trial over budget
    eight_bit = cfg.scheme == "default_8bit" or (cfg.weight_bits, cfg.activation_bits) == (8, 8)
    if cfg.search.ptq and eight_bit and not cfg.float_fallback_names:
        # No training: the float model converted with the same calibration data. Same size as
        # the 8-bit QAT model, so it competes on the metric alone.
        ptq = trials.attempt("ptq", "post-training quantization of the float model (no QAT)",
                             {}, (sensitivity.fresh_copy(model), [], {"method": "ptq"}))
    for move, change, changes, step in candidates(cfg, [r.name for r in ranked]):
        if len(trials.done) == cfg.search.max_trials:
            break
        trial, kept = trials.attempt(move, change, changes)
        if move == "as configured" and ptq is not None and ptq[0].within_budget and \
                ptq[0].drop_pt <= trial.drop_pt:
            return ptq[1], None
        if not trial.within_budget:
            if step is not None:
                missed[move] = step[1]
            continue
        chosen = kept
        if step is not None and step[1] - missed.get(move, 0) > 1:
            # Step back: bisect between the most layers that missed the budget and these,
            # keeping the fewest raised layers (the smallest model) that stays within it.
            # At most log2 of the gap extra trials, each reported as a refine step.
            refined_from = trial.index
            todo, lo, hi = step[0], missed.get(move, 0), step[1]
            while hi - lo > 1:
                mid = (lo + hi) // 2
                t, k = trials.attempt(f"{move} (refine)", *_layer_change(cfg, move, todo, mid))
                if not t.within_budget:
                    lo = mid
                    continue
                hi = mid
                if t.int8_bytes <= trials.done[chosen[0]].int8_bytes:
                    chosen = k
        break
    return chosen, refined_from


def _within_reason(trials: List[Trial], index, refined_from, metric, float_acc, split) -> str:
    t = trials[index]
    first = "the first within budget"
    if refined_from is not None:
        steps = len(trials) - 1 - refined_from
        first = (f"the smallest within budget after refining trial {refined_from}"
                 if index != refined_from else
                 f"the first within budget (stepping back to fewer layers, {steps} refine "
                 f"trial(s), left the budget)")
    if t.move == "ptq":
        first = (f"within budget and at least as good as QAT as configured (trial "
                 f"{index + 1}: {trials[index + 1].drop_pt:+.2f} {metric.unit}), with no "
                 "training: kept")
    fmt = ".4g" if metric.name == "mae" else ".4f"
    return (f"trial {index} ({t.move}: {t.change}) is {first}: int8 {metric.name} "
            f"{t.accuracy:{fmt}} vs float {float_acc:{fmt}} on {split!r} "
            f"({t.drop_pt:+.2f} <= {metric.budget} {metric.unit}, 95% [{t.drop_low_pt:+.2f}, "
            f"{t.drop_high_pt:+.2f}]), {t.int8_bytes} bytes")


def _no_mix(trial_cfg: QuantizationConfig, cfg: QuantizationConfig, ranked) -> Optional[str]:
    """What to say when the kept trial is no mixed model at all: every weight layer raised to 8
    bits (the plain int8 model) or every one left float."""
    names = {r.name for r in ranked}
    if (cfg.scheme == "n_bit" and cfg.weight_bits < 8 and names
            and names <= set(trial_cfg.int8_weight_names)):
        return ("no mixed-precision model within budget: every weight layer at 8 bits (the "
                f"plain int8 model, not {cfg.weight_bits}-bit)")
    if names and names <= set(trial_cfg.float_fallback_names):
        return "no int8 model within budget: every weight layer kept float"
    return None


def _edgetpu(data: bytes) -> TrialEdgeTpu:
    from tfx_qat.quant_lib.tflite import edgetpu
    p = edgetpu.analyze(data)
    first = p.first_unmapped
    return TrialEdgeTpu(ops=len(p.ops), predicted_on_tpu=p.predicted_on_tpu,
                        first_unmapped=None if first is None else f"#{first.index} {first.op}")
