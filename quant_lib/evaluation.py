"""Float-vs-int8 evaluation as a Beam pipeline: both models score the same batches of the same
split, per-slice counts are combined exactly (integers), so any runner (DirectRunner in-process or
multi-process, Dataflow, Flink, Spark) gives identical metrics.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np

import quant_lib  # noqa: F401
from quant_lib.inputs import BoundInputs, ModelInput
from quant_lib.metrics import OVERALL, SliceKey, SliceStats


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
    """Scores a batch with both models (loaded once per worker) and emits per-slice counts.

    The float model is scored as Keras (a Keras SavedModel) or through its own
    ``serving_default`` (e.g. ``tf.saved_model.save`` with a raw-tf.Example signature, as TFX's
    example modules write); the int8 model through TFLite, inputs fed by name."""

    PREDICTIONS = "predictions"  # tagged output: tf.Examples with label + both models' scores

    def __init__(self, float_model_dir: str, int8_path: str, inputs: ScoringInputs,
                 slicing_features: Sequence[str], top_k: int, emit_predictions: bool = False):
        self._float_dir, self._int8_path, self._inputs = float_model_dir, int8_path, inputs
        self._features, self._k = tuple(slicing_features), top_k
        self._emit = emit_predictions

    def setup(self):
        from quant_lib import tflite
        self._bound = self._inputs.bind()
        self._float = float_scorer(self._float_dir, self._inputs.model_inputs, self._bound)
        with tf_gfile_open(self._int8_path) as f:
            self._int8 = tflite.TFLiteClassifier(f.read())

    def process(self, batch: List[bytes]) -> Iterable[Tuple[SliceKey, SliceStats]]:
        import tensorflow as tf
        x, y = self._bound.parse(tf.constant(batch))
        x = {k: v.numpy() for k, v in x.items()}
        x, y = self._bound.validated(x, y.numpy().astype(np.int64), "batch")
        scores = {"float": self._float(batch, x),
                  "int8": self._int8.predict(x, batch_size=len(y))}
        groups: Dict[SliceKey, List[int]] = {}
        for i, raw in enumerate(batch):
            for key in slice_keys(raw, self._features):
                groups.setdefault(key, []).append(i)
        for key, idx in groups.items():
            idx = np.asarray(idx)
            yield key, SliceStats(self._bound.num_classes, self._k).add(
                y[idx], {m: s[idx] for m, s in scores.items()})
        if self._emit:
            for i, raw in enumerate(batch):
                yield beam.pvalue.TaggedOutput(self.PREDICTIONS, prediction_example(
                    raw, int(y[i]), scores["float"][i], scores["int8"][i],
                    self._bound.adapter.label_key, self._features))


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
    num_classes: int

    def bind(self) -> BoundInputs:
        return BoundInputs(self.make_adapter(), dict(self.mapping), self.model_inputs,
                           self.num_classes)


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
    if scores.shape[-1] != bound.num_classes:
        raise ValueError(f"the float model at {float_dir} outputs {scores.shape[-1]} scores per "
                         f"example but the int8 model {bound.num_classes}: wire the float model "
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


def prediction_example(raw: bytes, label: int, float_scores, int8_scores, label_key: str,
                       features: Sequence[str]) -> bytes:
    """A tf.Example for TFMA's model-agnostic evaluation: label, each model's scores under
    ``float_scores``/``int8_scores``, and the slicing features copied from the input."""
    import tensorflow as tf
    src = tf.train.Example.FromString(raw)
    ex = tf.train.Example()
    fmap = ex.features.feature
    fmap[label_key].int64_list.value.append(label)
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
                    predictions_prefix: Optional[str] = None):
    """serialized tf.Examples -> (slice key, SliceStats) for every slice; with
    ``predictions_prefix`` also writes per-example predictions there (gzip TFRecord)."""
    scored = (pcoll
              | "Batch" >> beam.BatchElements(min_batch_size=batch_size,
                                              max_batch_size=batch_size)
              | "Score" >> beam.ParDo(_ScoreBatch(
                  float_model_dir, int8_path, inputs, slicing_features, top_k,
                  emit_predictions=predictions_prefix is not None)).with_outputs(
                      _ScoreBatch.PREDICTIONS, main="stats"))
    if predictions_prefix is not None:
        _ = scored[_ScoreBatch.PREDICTIONS] | "WritePredictions" >> beam.io.WriteToTFRecord(
            predictions_prefix, file_name_suffix=".tfrecord.gz")
    return scored["stats"] | "Combine" >> beam.CombinePerKey(_MergeStats())


def encode(kv: Tuple[SliceKey, SliceStats]) -> str:
    return json.dumps({"slice": [list(x) for x in kv[0]], "counts": kv[1].to_counts()})


def decode(lines: Iterable[str]) -> Dict[SliceKey, SliceStats]:
    out = {}
    for line in lines:
        if line.strip():
            d = json.loads(line)
            out[tuple(tuple(x) for x in d["slice"])] = SliceStats.from_counts(d["counts"])
    return out


def latency_ms(model_bytes: bytes, images, repeats: int = 3) -> Optional[float]:
    """Median per-example latency of a TFLite model: one thread, batch 1, default (XNNPACK)
    delegate; the median over ``repeats`` passes of the per-pass mean."""
    from quant_lib import tflite
    runner = tflite.TFLiteClassifier(model_bytes, num_threads=1)
    first = {k: v[:1] for k, v in images.items()} if isinstance(images, dict) else images[:1]
    n = len(next(iter(images.values()))) if isinstance(images, dict) else len(images)
    runner.predict(first, batch_size=1)  # allocate + warm up
    passes = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runner.predict(images, batch_size=1)
        passes.append((time.perf_counter() - t0) / n)
    return 1000 * statistics.median(passes)
