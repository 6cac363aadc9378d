"""What QuantEvaluator decides from the scored statistics besides TFMA's thresholds: the per-class
guard, the deployed-model check, and ``EvaluationResult``, which the records and files are
written from."""
from __future__ import annotations

import dataclasses
import json
from typing import Dict, List, Optional, Sequence

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfx_qat.quant_lib.evaluation import scoring
from tfx_qat.quant_lib.evaluation.metrics import OVERALL, SliceKey, SliceStats


def guarded_comparisons(stats: Dict[SliceKey, object], labels: Sequence[str] = ()) -> Dict:
    """What the class guard judges: each class on the whole split, and each configured slice;
    name -> tfx_qat.quant_lib.evaluation.paired.PairedAccuracy (classifiers only; empty otherwise)."""
    from tfx_qat.quant_lib.evaluation.metrics import slice_name
    overall = stats.get(OVERALL)
    if not isinstance(overall, SliceStats):
        return {}
    out = {}
    for k, p in overall.paired_per_class().items():
        name = labels[k] if k < len(labels) else None
        out[f"class {k}" + (f" ({name})" if name and name != str(k) else "")] = p
    for key, s in sorted(stats.items()):
        if key != OVERALL:
            out[slice_name(key)] = s.paired()
    return out


def class_guard_failures(cfg, stats: Dict[SliceKey, object], labels: Sequence[str] = ()):
    """EvalConfig.max_class_drop_pt's reasons to block (tfx_qat.quant_lib.evaluation.paired.guard)."""
    from tfx_qat.quant_lib.evaluation import paired
    if cfg.max_class_drop_pt is None:
        return []
    return paired.guard(guarded_comparisons(stats, labels), cfg.max_class_drop_pt,
                        cfg.class_drop_rule, cfg.class_drop_alpha)


def deployed_check(limit_pt: Optional[float], overall, deployed_uri: Optional[str]) -> Dict:
    """The new int8 model vs the latest blessed (deployed) one, both scored in the same Beam job:
    accuracy may fall at most ``limit_pt`` percentage points below the deployed model's."""
    if limit_pt is None:
        return {"status": "skipped", "reason": "no baseline check configured "
                "(EvalConfig.max_regression_vs_baseline_pt=None)"}
    if deployed_uri is None:
        return {"status": "skipped", "reason": "no blessed baseline model yet (first run): "
                "regression check skipped"}
    base, new = overall.value("accuracy", scoring.DEPLOYED), overall.value("accuracy", "int8")
    regression = (base - new) * 100
    ok = regression <= limit_pt + 1e-9
    return {"status": "passed" if ok else "failed", "baseline_uri": deployed_uri,
            "baseline_int8_accuracy": base, "regression_pt": regression,
            "reason": f"int8 accuracy {new:.4f} vs blessed baseline {base:.4f} ({deployed_uri}): "
                      f"regression {regression:.3f} pt {'within' if ok else 'exceeds'} "
                      f"max_regression_vs_baseline_pt={limit_pt}"}


@dataclasses.dataclass
class EvaluationResult:
    """What QuantEvaluator measured and decided: exact per-slice statistics, TFMA's verdict, the
    deployed-model check; ``to_properties()`` for the evaluation and blessing artifacts,
    ``metrics()`` for ``metrics.json``, the run report and the model card."""

    eval_split: str
    task: object  # tfx_qat.quant_lib.examples.tasks.Task
    stats: Dict[SliceKey, object]
    verdict: object  # tfx_qat.quant_lib.evaluation.gate.GateResult
    deployed: Dict
    int8_sha256: str
    gate_config: str  # the tfma.EvalConfig that decided, as JSON
    latency: object  # records.Evaluation with the latency fields (latency.compare_latency)
    points: List = dataclasses.field(default_factory=list)  # (label, float, int8) sample
    op_profile: Dict = dataclasses.field(default_factory=dict)  # evaluation.op_profiles

    @property
    def overall(self):
        return self.stats[OVERALL]

    @property
    def blessed(self) -> bool:
        return self.verdict.blessed

    def headline(self) -> Dict[str, float]:
        """float / int8 values of the task's headline metric (accuracy, or MAE) on the split."""
        h = self.overall.headline
        return {f"float_{h}": self.overall.value(h, "float"),
                f"int8_{h}": self.overall.value(h, "int8")}

    def to_properties(self):
        """A records.Evaluation (QuantEvaluator adds the blessing's own fields)."""
        from tfx_qat.quant_lib.artifacts import records
        o = self.overall
        rec = self.latency.merged(records.Evaluation(
            **self.headline(), eval_examples=o.n, task=self.task.kind,
            validation_failures=len(self.verdict.failures)))
        if self.task.is_classification:  # exact counts: MLMD keeps ~6 significant digits
            rec = dataclasses.replace(
                rec, accuracy_delta_pt=(o.value("accuracy", "float") -
                                        o.value("accuracy", "int8")) * 100,
                float_correct=o.correct["float"], int8_correct=o.correct["int8"],
                int8_top1_ties=o.ties["int8"])
        return rec

    def metrics(self):
        """``metrics.json`` as its report_files.Metrics."""
        import json
        from tfx_qat.quant_lib.artifacts.report_files import Metrics
        from tfx_qat.quant_lib.evaluation.metrics import slice_name
        o = self.overall
        extra = {}
        if self.task.is_classification:
            extra = dict(accuracy_delta_pt=self.to_properties().accuracy_delta_pt,
                         top1_agreement=o.agree / o.n)
        return Metrics(
            eval_split=self.eval_split, eval_examples=o.n, task=self.task.kind,
            task_source=self.task.source, **self.headline(), blessed=self.blessed,
            reasons=self.verdict.reasons, threshold_failures=self.verdict.failures,
            tfma_headline=self.verdict.headline, baseline=self.deployed,
            slices={slice_name(k): v.to_dict() for k, v in sorted(self.stats.items())},
            int8_sha256=self.int8_sha256, eval_config=json.loads(self.gate_config),
            points=self.points, op_profile=self.op_profile, **self.latency.to_properties(),
            **extra)
