"""Float-vs-int8 scoring as one Beam pipeline: the float, int8 (and deployed int8) models score
the same batches of the same split; per-slice counts are combined exactly (integers), so any
runner (DirectRunner in-process or multi-process, Dataflow, Flink, Spark) gives identical
metrics; the predictions feed TFMA, which computes the gate's metrics and thresholds."""
from __future__ import annotations

import dataclasses
import json
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfx_qat.quant_lib.evaluation.metrics import OVERALL, RegressionStats, SliceKey, SliceStats
from tfx_qat.quant_lib.examples.data import DataError
from tfx_qat.quant_lib.examples.inputs import BoundInputs, ModelInput


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

    def __init__(self, models: "ScoredModels", inputs: ScoringInputs,
                 slicing_features: Sequence[str], top_k: int):
        self._models, self._inputs = models, inputs
        self._features, self._k = tuple(slicing_features), top_k

    def setup(self):
        from tfx_qat.quant_lib.tflite import interpreter
        self._bound = self._inputs.bind()
        self._task = self._bound.task
        self._float = float_scorer(self._models.float_dir, self._inputs.model_inputs, self._bound)
        self._tflite = {}
        for name, path in (("int8", self._models.int8_path),
                           (DEPLOYED, self._models.deployed_path)):
            if path:
                with tf_gfile_open(path) as f:
                    self._tflite[name] = interpreter.TFLiteClassifier(f.read())

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
    task: Optional[object] = None  # tfx_qat.quant_lib.examples.tasks.Task; None: multiclass

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
    from tfx_qat.quant_lib.qat import models
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
    from tfx_qat.quant_lib.qat import models, saving
    if not models.is_keras_savedmodel(float_dir):
        return models.serving_scores(float_dir)
    model = saving.load_model(float_dir)
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


@dataclasses.dataclass(frozen=True)
class ScoredModels:
    """The model files one Beam job scores: the float SavedModel directory, the int8 file and
    the deployed int8 file (None: no deployed-model check)."""
    float_dir: str
    int8_path: str
    deployed_path: Optional[str] = None


@beam.ptransform_fn
def ScoreAndCombine(pcoll, models: ScoredModels, inputs: ScoringInputs,
                    slicing_features: Sequence[str], top_k: int, batch_size: int):
    """serialized tf.Examples -> {"stats": (slice key, stats) per slice, "predictions":
    prediction tf.Examples for TFMA, "points": (label, float, int8) for binary/regression}."""
    scored = (pcoll
              | "Batch" >> beam.BatchElements(min_batch_size=batch_size,
                                              max_batch_size=batch_size)
              | "Score" >> beam.ParDo(_ScoreBatch(
                  models, inputs, slicing_features, top_k)).with_outputs(
                      _ScoreBatch.PREDICTIONS, _ScoreBatch.POINTS, main="stats"))
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
