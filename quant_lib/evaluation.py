"""Float-vs-int8 evaluation as one Beam pipeline: the float, int8 (and deployed int8) models
score the same batches of the same split; per-slice counts are combined exactly (integers), so any
runner (DirectRunner in-process or multi-process, Dataflow, Flink, Spark) gives identical
metrics; the predictions feed TFMA, which computes the gate's metrics and thresholds.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np

import quant_lib  # noqa: F401
from quant_lib.data import DataError
from quant_lib.inputs import BoundInputs, ModelInput
from quant_lib.metrics import OVERALL, RegressionStats, SliceKey, SliceStats


def slice_keys(serialized: bytes, features: Sequence[str]) -> List[SliceKey]:
    """The overall slice plus one slice per slicing feature's (first) value in this example."""
    if not features:
        return [OVERALL]
    import tensorflow as tf
    ex = tf.train.Example.FromString(serialized)
    keys = [OVERALL]
    for f in features:
        feat = ex.features.feature.get(f)
        kind = feat.WhichOneof("kind") if feat is not None else None
        values = getattr(feat, kind).value if kind else []
        if not values:
            keys.append(((f, "<missing>"),))
            continue
        v = values[0]
        keys.append(((f, v.decode("utf-8", "replace") if isinstance(v, bytes) else
                      (str(int(v)) if kind == "int64_list" else repr(float(v)))),))
    return keys


class _ScoreBatch(beam.DoFn):
    """Scores a batch with every model (loaded once per worker) and emits per-slice statistics,
    one prediction tf.Example per example (for TFMA) and, for binary and regression tasks,
    (label, float, int8) points for the report's plots.

    The float model is scored as Keras (a Keras SavedModel) or through its own
    ``serving_default`` (e.g. ``tf.saved_model.save`` with a raw-tf.Example signature, as TFX's
    example modules write); the int8 models through TFLite, inputs fed by name."""

    PREDICTIONS, POINTS = "predictions", "points"

    def __init__(self, float_model_dir: str, int8_path: str, inputs: ScoringInputs,
                 slicing_features: Sequence[str], top_k: int,
                 deployed_path: Optional[str] = None):
        self._float_dir, self._int8_path, self._inputs = float_model_dir, int8_path, inputs
        self._features, self._k = tuple(slicing_features), top_k
        self._deployed_path = deployed_path

    def setup(self):
        from quant_lib import tflite
        self._bound = self._inputs.bind()
        self._task = self._bound.task
        self._float = float_scorer(self._float_dir, self._inputs.model_inputs, self._bound)
        self._tflite = {}
        for name, path in (("int8", self._int8_path), (DEPLOYED, self._deployed_path)):
            if path:
                with tf_gfile_open(path) as f:
                    self._tflite[name] = tflite.TFLiteClassifier(f.read())

    def process(self, batch: List[bytes]):
        import tensorflow as tf
        try:  # past the driver's sample, a record that does not parse is a data error too
            x, y = self._bound.parse(tf.constant(batch))
        except tf.errors.InvalidArgumentError as e:
            adapter = self._bound.adapter
            raise DataError(f"a record does not match {adapter.describe()}: "
                            f"{e.message.splitlines()[0]} — {adapter.hint()}") from e
        x, y = self._bound.validated({k: v.numpy() for k, v in x.items()}, y.numpy(), "batch")
        raw = {"float": self._float(batch, x)}
        raw.update({m: r.predict(x, batch_size=len(y)) for m, r in self._tflite.items()})
        models = tuple(raw)
        groups: Dict[SliceKey, List[int]] = {}
        for i, record in enumerate(batch):
            for key in slice_keys(record, self._features):
                groups.setdefault(key, []).append(i)
        if self._task.is_classification:
            scores = {m: self._task.class_scores(s) for m, s in raw.items()}
            new = lambda: SliceStats(self._task.num_classes, self._k, models)  # noqa: E731
        else:
            scores = {m: self._task.probabilities(s) for m, s in raw.items()}
            new = lambda: RegressionStats(models)  # noqa: E731
        for key, idx in groups.items():
            idx = np.asarray(idx)
            yield key, new().add(y[idx], {m: s[idx] for m, s in scores.items()})
        preds = {m: self._task.probabilities(raw[m]) for m in ("float", "int8")}
        for i, record in enumerate(batch):
            yield beam.pvalue.TaggedOutput(self.PREDICTIONS, prediction_example(
                record, y[i], preds["float"][i], preds["int8"][i],
                self._bound.adapter.label_key, self._features))
            if self._task.kind != "multiclass":
                yield beam.pvalue.TaggedOutput(self.POINTS, (
                    float(y[i]), float(preds["float"][i][0]), float(preds["int8"][i][0])))


DEPLOYED = "deployed"  # the latest blessed int8 model, scored beside the new one


def tf_gfile_open(path: str):
    import tensorflow as tf
    return tf.io.gfile.GFile(path, "rb")


@dataclasses.dataclass(frozen=True)
class ScoringInputs:
    """What a Beam worker needs to rebuild the bound inputs: a picklable adapter factory, the
    feature -> model input mapping checked before the pipeline started, and the inputs' shapes."""

    make_adapter: Callable[[], object]
    mapping: Dict[str, str]
    model_inputs: Tuple[ModelInput, ...]
    num_classes: int  # the model's output width
    task: Optional[object] = None  # quant_lib.tasks.Task; None: multiclass

    def bind(self) -> BoundInputs:
        return BoundInputs(self.make_adapter(), dict(self.mapping), self.model_inputs,
                           self.num_classes, self.task)


def _graph_error(e) -> str:
    """The line of a TensorFlow graph error that says what went wrong (not its preamble)."""
    lines = [ln.strip() for ln in getattr(e, "message", str(e)).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Graph execution error", "Detected at node",
                                                       "<stack traces", "[[", "File "))]
    return (useful or lines or [""])[0][:300]


def check_float_model(float_dir: str, bound: BoundInputs, serialized: Sequence[bytes]) -> None:
    """Scores a few eval records with a non-Keras float model's ``serving_default`` before the
    Beam pipeline: a signature that cannot take these Examples (e.g. it parses raw Examples and
    was given transformed ones) is one clear error here, not a failure inside a Beam worker."""
    import tensorflow as tf
    from quant_lib import models
    if models.is_keras_savedmodel(float_dir):
        return  # scored as Keras on the same bound inputs as the int8 model
    x, _ = bound.parse(tf.constant(list(serialized)))
    try:
        scores = models.serving_scores(float_dir)(serialized, {k: v.numpy() for k, v in x.items()})
    except (tf.errors.InvalidArgumentError, ValueError) as e:
        raise ValueError(
            f"the float model's serving_default ({float_dir}) cannot score these Examples: "
            f"{_graph_error(e)} — wire the Examples it serves (for TFX's example modules, the "
            "raw ExampleGen output)") from e
    if scores.shape[-1] != bound.task.outputs:
        raise ValueError(f"the float model at {float_dir} outputs {scores.shape[-1]} scores per "
                         f"example but the int8 model {bound.task.outputs}: wire the float model "
                         "the int8 model was trained from")


def float_scorer(float_dir: str, model_inputs: Sequence[ModelInput], bound: BoundInputs):
    """(serialized batch, model inputs by name) -> float scores."""
    import tensorflow as tf
    from quant_lib import models, qat
    if not models.is_keras_savedmodel(float_dir):
        return models.serving_scores(float_dir)
    model = qat.load_model(float_dir)
    names = list(model.input_names)
    # One traced graph for every batch size: Keras' predict_on_batch costs ~10 ms of Python
    # per call, which made the evaluator 0.62x a raw loop (make bench profile).
    specs = {i.name: tf.TensorSpec([None, *i.shape], tf.as_dtype(i.dtype)) for i in model_inputs}
    if len(names) == 1:
        spec = specs.get(names[0]) or next(iter(specs.values()))
        fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        return lambda serialized, x: fn(bound.keras_x(x)).numpy()
    fn = tf.function(lambda x: model(x, training=False), input_signature=[specs])
    return lambda serialized, x: fn(x).numpy()


def prediction_example(raw: bytes, label, float_scores, int8_scores, label_key: str,
                       features: Sequence[str]) -> bytes:
    """A tf.Example for TFMA's model-agnostic evaluation: label (a class id or a number), each
    model's predictions under ``float_scores``/``int8_scores``, and the slicing features copied
    from the input."""
    import tensorflow as tf
    src = tf.train.Example.FromString(raw)
    ex = tf.train.Example()
    fmap = ex.features.feature
    if isinstance(label, (int, np.integer)):
        fmap[label_key].int64_list.value.append(int(label))
    else:
        fmap[label_key].float_list.value.append(float(label))
    fmap["float_scores"].float_list.value.extend(np.asarray(float_scores, np.float32))
    fmap["int8_scores"].float_list.value.extend(np.asarray(int8_scores, np.float32))
    for f in features:
        if f != label_key and f in src.features.feature:
            fmap[f].CopyFrom(src.features.feature[f])
    return ex.SerializeToString()


class _MergeStats(beam.CombineFn):
    def create_accumulator(self):
        return None

    def add_input(self, acc, stats):
        return stats if acc is None else acc.merge(stats)

    def merge_accumulators(self, accs):
        out = None
        for a in accs:
            if a is not None:
                out = a if out is None else out.merge(a)
        return out

    def extract_output(self, acc):
        return acc


@beam.ptransform_fn
def ScoreAndCombine(pcoll, float_model_dir: str, int8_path: str, inputs: ScoringInputs,
                    slicing_features: Sequence[str], top_k: int, batch_size: int,
                    deployed_path: Optional[str] = None):
    """serialized tf.Examples -> {"stats": (slice key, stats) per slice, "predictions":
    prediction tf.Examples for TFMA, "points": (label, float, int8) for binary/regression}."""
    scored = (pcoll
              | "Batch" >> beam.BatchElements(min_batch_size=batch_size,
                                              max_batch_size=batch_size)
              | "Score" >> beam.ParDo(_ScoreBatch(
                  float_model_dir, int8_path, inputs, slicing_features, top_k,
                  deployed_path)).with_outputs(_ScoreBatch.PREDICTIONS, _ScoreBatch.POINTS,
                                               main="stats"))
    return {"stats": scored["stats"] | "Combine" >> beam.CombinePerKey(_MergeStats()),
            "predictions": scored[_ScoreBatch.PREDICTIONS],
            "points": scored[_ScoreBatch.POINTS]}


def encode(kv: Tuple[SliceKey, SliceStats]) -> str:
    return json.dumps({"slice": [list(x) for x in kv[0]], "counts": kv[1].to_counts()})


def decode(lines: Iterable[str]) -> Dict[SliceKey, SliceStats]:
    out = {}
    for line in lines:
        if line.strip():
            d = json.loads(line)
            cls = RegressionStats if d["counts"].get("kind") == "regression" else SliceStats
            out[tuple(tuple(x) for x in d["slice"])] = cls.from_counts(d["counts"])
    return out


def latency_ms(model_bytes: bytes, images, repeats: int = 3) -> Optional[float]:
    """Median per-example latency of a TFLite model on the deployment runtime (LiteRT):
    ``invoke()`` alone, one thread, batch 1, default (XNNPACK) delegate; the median over
    ``repeats`` passes of the per-pass mean."""
    return interleaved_ms({"model": model_bytes}, images, repeats)["model"]


def compare_latency(int8_bytes: bytes, float_bytes: Optional[bytes], inputs,
                    repeats: int = 5) -> Dict[str, object]:
    """Per-example latency of the int8 model and its float reference on LiteRT (the figures the
    speed gate uses) and on TF's interpreter (``tf_*``), ``invoke()`` alone, 1 thread, batch 1,
    default XNNPACK delegate: the median over ``repeats`` passes, each pass running every model
    on every runtime in turn, so all see the same machine state; with how XNNPACK takes each
    model (``tflite.delegation``: an op it leaves to the builtin kernels is why an int8 model can
    be slower than float) and how far the two runtimes' raw int8 outputs differ on these inputs
    (quantized steps; 0: bit-identical)."""
    from quant_lib import cpu, records, runtime, tflite
    models = {"int8": int8_bytes, **({"float": float_bytes} if float_bytes else {})}
    ms, runners = timed_ms(models, inputs, repeats, runtime.RUNTIMES)
    lt, tf = runtime.DEPLOYMENT, runtime.SECOND
    # Raw int8 outputs, each example at batch 1 as timed (no batch resize: a model whose graph
    # fixes its batch cannot take one).
    diff = np.abs(runners["int8", lt].outputs_at_batch_one(inputs).astype(np.float64)
                  - runners["int8", tf].outputs_at_batch_one(inputs).astype(np.float64))
    return records.Evaluation(
        latency_runtime=runtime.name(lt), tf_runtime=runtime.name(tf),
        int8_latency_ms=ms["int8", lt], float_latency_ms=ms.get(("float", lt)),
        tf_int8_latency_ms=ms["int8", tf], tf_float_latency_ms=ms.get(("float", tf)),
        int8_runtimes_max_abs_diff=float(diff.max()) if diff.size else 0.0,
        latency_cpu=cpu.read().describe(), latency_int8_dot=cpu.read().int8_dot,
        int8_xnnpack=tflite.delegation(int8_bytes, lt).describe(),
        float_xnnpack=tflite.delegation(float_bytes, lt).describe() if float_bytes else None)


def op_profiles(int8_bytes: bytes, float_bytes: Optional[bytes]) -> Dict[str, Dict]:
    """Where each model's time goes, op type by op type (``quant_lib.op_profile``); a model the
    profiler cannot cut (control flow) gets its reason instead."""
    from quant_lib import op_profile
    out = {}
    for k, b in (("int8", int8_bytes), ("float", float_bytes)):
        if b:
            try:
                out[k] = op_profile.profile(b).to_json()
            except ValueError as e:
                out[k] = {"error": str(e)}
    return out


def interleaved_ms(models: Dict[str, bytes], inputs, passes: int) -> Dict[str, float]:
    """Median over ``passes`` interleaved passes of each model's mean ``invoke()`` time per
    example on the deployment runtime (ms; 1 thread, batch 1, default XNNPACK delegate)."""
    from quant_lib import runtime
    ms, _ = timed_ms(models, inputs, passes, (runtime.DEPLOYMENT,))
    return {k: v for (k, _), v in ms.items()}


def timed_ms(models: Dict[str, bytes], inputs, passes: int, runtimes: Sequence[str]):
    """({(model, runtime): median over ``passes`` of the pass's mean ``invoke()`` ms per example},
    the runners): each pass runs every model on every runtime in turn, after one warm-up pass."""
    from quant_lib import tflite
    runners = {(k, rt): tflite.TFLiteClassifier(b, num_threads=1, rt=rt)
               for k, b in models.items() for rt in runtimes}
    for r in runners.values():
        r.invoke_seconds(inputs)
    times: Dict[tuple, List[float]] = {k: [] for k in runners}
    for _ in range(passes):
        for k, r in runners.items():
            times[k].append(1000 * statistics.mean(r.invoke_seconds(inputs)))
    return {k: statistics.median(v) for k, v in times.items()}, runners


NOT_MEASURABLE = "not measurable on this CPU"


def speed_gate(cfg, latency) -> Tuple[object, List[str]]:
    """(``latency`` with ``speed_gate`` set, the blocking reasons) of ``cfg.min_int8_speedup``."""
    status, failures = _speed_check(cfg.min_int8_speedup, latency, cfg.speed_gate_any_cpu)
    return dataclasses.replace(latency, speed_gate=status), failures


def speed_notes(latency) -> List[str]:
    """What the blessing's reasons say of a speed gate that was not applied."""
    status = latency.speed_gate or ""
    return [f"EvalConfig.min_int8_speedup: {status}"] if status.startswith(NOT_MEASURABLE) else []


def _speed_check(min_speedup: Optional[float], latency, any_cpu: bool) -> Tuple[str, List[str]]:
    """On a CPU without int8 dot-product instructions (``quant_lib.cpu``) the int8/float ratio
    measured here cannot predict the app's device's: it does not block unless ``any_cpu``."""
    if min_speedup is None:
        return None, []
    f, i = latency.float_latency_ms, latency.int8_latency_ms
    if not f:
        return "failed", [
            f"EvalConfig.min_int8_speedup={min_speedup:g} is set but there is no float TFLite "
            "reference to compare with: IntegerExporter writes one from a Keras float model "
            "(base_model=, or the copy QuantizeTrainer keeps of a rebuilt one)"]
    if f / i >= min_speedup:
        return "passed", []
    if latency.latency_int8_dot is False and not any_cpu:
        return (f"{NOT_MEASURABLE} (no int8 dot product): int8 {f / i:.2f}x float on "
                f"{latency.latency_cpu}; EvalConfig.min_int8_speedup={min_speedup:g} not applied "
                "(EvalConfig.speed_gate_any_cpu=True gates on this worker's speed)"), []
    return "failed", [
        f"int8 speed {f / i:.2f}x float on {latency.latency_runtime} ({i:.4g} vs {f:.4g} ms per "
        f"example, invoke() alone, 1 thread; CPU {latency.latency_cpu}) is below "
        f"EvalConfig.min_int8_speedup={min_speedup:g}; int8: {latency.int8_xnnpack}; float: "
        f"{latency.float_xnnpack}"]


def guarded_comparisons(stats: Dict[SliceKey, object], labels: Sequence[str] = ()) -> Dict:
    """What the class guard judges: each class on the whole split, and each configured slice;
    name -> quant_lib.paired.PairedAccuracy (classifiers only; empty otherwise)."""
    from quant_lib.metrics import slice_name
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
    """EvalConfig.max_class_drop_pt's reasons to block (quant_lib.paired.guard)."""
    from quant_lib import paired
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
    base, new = overall.value("accuracy", DEPLOYED), overall.value("accuracy", "int8")
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
    task: object  # quant_lib.tasks.Task
    stats: Dict[SliceKey, object]
    verdict: object  # quant_lib.gate.GateResult
    deployed: Dict
    int8_sha256: str
    gate_config: str  # the tfma.EvalConfig that decided, as JSON
    latency: object  # records.Evaluation with the latency fields (compare_latency)
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
        from quant_lib import records
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
        from quant_lib.metrics import slice_name
        from quant_lib.report_files import Metrics
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
