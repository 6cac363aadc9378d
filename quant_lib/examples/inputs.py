"""Input adapters: the seam between the data a pipeline has and the Keras model it quantizes.

The config says *what* to quantize; an adapter says how serialized tf.Examples become the model's
inputs. ``ImageAdapter`` reads one fixed-length image feature (``DataSpec``, what ``make run``
uses); ``FeatureAdapter`` parses a feature spec (from a schema, a Transform graph, or the records
themselves), optionally applies a transform (e.g. TFT's ``transform_features_layer``) and hands
every feature over by name. ``bind`` checks the features against the model's inputs (names,
element counts, dtypes) on real records *before* any training, conversion or scoring, and the
returned ``BoundInputs`` feeds Keras, the TFLite converter and the TFLite interpreter alike.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf

from tfx_qat.quant_lib.config import DataSpec
from tfx_qat.quant_lib.examples import data as image_data, statistics as split_statistics, tasks
from tfx_qat.quant_lib.examples.data import DataError, resolve_files

Features = Dict[str, np.ndarray]
SAMPLE = 1024  # records parsed and checked up front when statistics vouch for the whole split


class InputMismatchError(DataError):
    """The data's features do not fit the model's inputs; the message names both sides."""


class TransformError(DataError):
    """The Transform graph failed on features parsed as its raw spec says: the Transform's
    fault (or its schema's), not the data's; the message names what it was given."""


def _kind(t) -> str:
    """How a parsed feature looks, for error messages: dtype, and sparse or its shape."""
    if isinstance(t, tf.SparseTensor):
        return f"sparse {t.dtype.name}"
    return f"{t.dtype.name} {list(t.shape[1:])}"


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """One model input: name, per-example shape (no batch dimension) and dtype."""

    name: str
    shape: Tuple[Optional[int], ...]
    dtype: str

    @property
    def size(self) -> Optional[int]:
        return None if any(d is None for d in self.shape) else int(np.prod(self.shape, dtype=int))

    def describe(self) -> str:
        return f"{self.name!r} {list(self.shape)} {self.dtype}"


def keras_inputs(model) -> List[ModelInput]:
    """The inputs of a tf_keras Functional/Sequential model, in the model's order."""
    out = []
    for name, t in zip(model.input_names, model.inputs):
        out.append(ModelInput(name, tuple(t.shape[1:]), t.dtype.name))
    return out


def _message(e) -> str:
    """A TensorFlow error's first line without its function-node prefix and op suffix."""
    if not hasattr(e, "message"):
        return str(e)
    return re.sub(r"\s*\[Op:\w+\]( name:.*)?$", "", image_data.tf_message(e))


def _dense(t):
    return tf.sparse.to_dense(t) if isinstance(t, tf.SparseTensor) else t


class InputAdapter:
    """Turns a batch of serialized tf.Examples into (features by name, labels as stored)."""

    label_key: str
    num_classes: Optional[int] = None
    serves_examples = False  # parse_for_serving works: a SavedModel can serve raw tf.Examples

    def parse(self, serialized: tf.Tensor) -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def hint(self) -> str:
        """What every example needs, for parse errors."""
        return "fix the data or the input spec"

    def parse_for_serving(self, serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Features of unlabelled examples (serving); default: not supported."""
        raise NotImplementedError

    def serving_trackables(self) -> Dict[str, object]:
        """Objects a SavedModel must track for ``parse_for_serving`` (e.g. the TFT layer)."""
        return {}

    def bind(self, inputs: Sequence[ModelInput], patterns, num_classes: int,
             task: Optional[tasks.Task] = None) -> "BoundInputs":
        """Checks the features of the first records in ``patterns`` against ``inputs``."""
        files = resolve_files(patterns)
        sample = first_records(files, 8)
        try:
            feats, _ = self.parse(tf.constant(sample))
        except TransformError:
            raise
        except (tf.errors.InvalidArgumentError, ValueError, KeyError) as e:
            msg = _message(e)
            raise DataError(f"tf.Examples in {files[0]} do not match {self.describe()}: "
                            f"{msg} — {self.hint()}") from e
        return BoundInputs(self, match(inputs, feats, self.describe()), inputs, num_classes,
                           task)


def match(inputs: Sequence[ModelInput], feats: Dict[str, tf.Tensor],
          source: str) -> Dict[str, str]:
    """model input name -> feature name; one InputMismatchError naming both sides otherwise.

    A single-input model fed by a single feature is matched whatever the names; otherwise by
    name. Element counts per example must agree (the feature is reshaped to the input's shape);
    numeric features are cast to the input's dtype, strings never are.
    """
    have = {k: (tuple(v.shape[1:]), v.dtype) for k, v in feats.items()}
    listing = ", ".join(f"{k!r} {list(s)} {d.name}" for k, (s, d) in sorted(have.items()))
    wanted = ", ".join(i.describe() for i in inputs)
    if len(inputs) == 1 and len(have) == 1:
        mapping = {inputs[0].name: next(iter(have))}
    else:
        missing = [i.name for i in inputs if i.name not in have]
        if missing:
            raise InputMismatchError(
                f"model inputs [{wanted}] do not match the features of {source} [{listing}]: no "
                f"feature named {missing}. Inputs are matched by name: name the Keras Input "
                "layers after the (transformed) features, or make the Transform/Examples provide "
                "them")
        mapping = {i.name: i.name for i in inputs}
    for i in inputs:
        f = mapping[i.name]
        shape, dtype = have[f]
        n = int(np.prod([d for d in shape if d is not None], dtype=int)) \
            if all(d is not None for d in shape) else None
        if dtype == tf.string:
            raise InputMismatchError(
                f"model input {i.describe()} is fed by feature {f!r} of {source}, which holds "
                "strings: map them to numbers in the Transform (e.g. tft.compute_and_apply_"
                "vocabulary); int8 models take numeric inputs only")
        if i.size is not None and n is not None and n != i.size:
            raise InputMismatchError(
                f"model input {i.describe()} takes {i.size} value(s) per example but feature "
                f"{f!r} of {source} has shape {list(shape)} ({n} value(s)): fix the feature's "
                "shape (schema / Transform) or the model's Input shape")
    return mapping


class BoundInputs:
    """An adapter matched to one model's inputs and task: feeds Keras, the converter and TFLite.
    Labels come out as the task wants them: class ids (int64) or numbers (float32)."""

    def __init__(self, adapter: InputAdapter, mapping: Dict[str, str],
                 inputs: Sequence[ModelInput], num_classes: int,
                 task: Optional[tasks.Task] = None):
        self.adapter, self.mapping = adapter, mapping
        self.task = task or tasks.Task(tasks.MULTICLASS, num_classes, False, "a class label")
        self.num_classes = self.task.num_classes if self.task.is_classification else num_classes
        self._shapes = {i.name: (i.shape, i.dtype) for i in inputs}
        self._sizes = {i.name: i.size for i in inputs}

    def to_model(self, feats: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        out = {}
        for name, f in self.mapping.items():
            t = _dense(feats[f])
            shape, dtype = self._shapes[name]
            if shape is not None and all(d is not None for d in shape):
                t = tf.reshape(t, (-1,) + tuple(shape))
            out[name] = tf.cast(t, tf.as_dtype(dtype))
        return out

    def parse(self, serialized) -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
        """Model inputs and the labels as stored (flattened); ``labels`` casts them."""
        feats, labels = self.adapter.parse(serialized)
        return self.to_model(feats), tf.reshape(_dense(labels), [-1])

    def labels(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, np.int64 if self.task.is_classification else np.float32)

    def keras_x(self, inputs):
        """Keras takes a bare tensor for a single-input model, a dict by name otherwise."""
        return next(iter(inputs.values())) if len(inputs) == 1 else inputs

    def dataset(self, patterns, batch_size: int, shuffle: bool = False, seed: int = 0,
                repeat: bool = False, shuffle_buffer: int = 10000) -> tf.data.Dataset:
        """A batched (inputs, labels) dataset for Keras ``fit``."""
        files = resolve_files(patterns)
        ds = tf.data.TFRecordDataset(files, compression_type=image_data.compression_of(files))
        if shuffle:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()

        def fn(serialized):
            x, y = self.parse(serialized)
            return self.keras_x(x), self.task.labels_for_training(y)

        return ds.batch(batch_size).map(fn, num_parallel_calls=tf.data.AUTOTUNE)\
            .prefetch(tf.data.AUTOTUNE)

    def batches(self, patterns, limit: Optional[int] = None,
                batch_size: int = 1024) -> Iterator[Tuple[Features, np.ndarray]]:
        """Validated numpy batches: every data problem becomes a DataError naming the files."""
        files = resolve_files(patterns)
        ds = tf.data.TFRecordDataset(files, compression_type=image_data.compression_of(files))
        if limit is None:
            image_data.check_framing(files)
        else:
            ds = ds.take(limit)
        seen = 0
        try:
            for raw in ds.batch(batch_size):
                x, y = self.parse(raw)
                x = {k: v.numpy() for k, v in x.items()}
                y = y.numpy()
                seen += len(y)
                yield self.validated(x, y, files[0])
        except tf.errors.DataLossError as e:
            raise DataError(f"corrupt or truncated TFRecord among {files[:3]}: "
                            f"{e.message.splitlines()[0]} — regenerate the data or drop the "
                            "damaged file") from e
        except tf.errors.InvalidArgumentError as e:
            raise DataError(f"tf.Examples in {files[0]} do not match {self.adapter.describe()}: "
                            f"{_message(e)} — {self.adapter.hint()}") from e
        if not seen:
            raise DataError(f"no examples in {files[:3]}: the split is empty")

    def validated(self, x: Features, y: np.ndarray, where: str):
        for k, v in x.items():
            if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
                bad = int(np.sum(~np.isfinite(v).reshape(len(v), -1).all(axis=1)))
                raise DataError(f"{bad} example(s) in {where} have NaN/Inf in feature "
                                f"{self.mapping[k]!r}: clean the data before training or "
                                "quantizing")
        problem = self.task.label_problem(y, self.adapter.label_key)
        if problem:
            raise DataError(problem)
        return x, self.labels(y)

    def arrays(self, patterns, limit: Optional[int] = None) -> Tuple[Features, np.ndarray]:
        xs, ys = zip(*self.batches(patterns, limit))
        return {k: np.concatenate([x[k] for x in xs]) for k in xs[0]}, np.concatenate(ys)

    def count(self, patterns) -> int:
        """Streams a whole split once with the checks above (framing, parse, NaN, labels)."""
        return sum(len(y) for _, y in self.batches(patterns, None, 4096))

    def raw_feature_sizes(self) -> Dict[str, Optional[int]]:
        """Stored feature -> values per example the model takes, for features the model reads
        as stored (none when a Transform makes them: raw statistics do not describe those)."""
        if getattr(self.adapter, "transform", None) is not None:
            return {}
        return {f: self._sizes[name] for name, f in self.mapping.items()}

    def check_split(self, patterns, statistics: Optional[bytes], source: str = "",
                    sample: int = SAMPLE) -> int:
        """The split's example count, checked before any training or scoring. With the split's
        StatisticsGen statistics: count, missing values, values per example, NaN/Inf and label
        range from them, plus parse and checks on the first ``sample`` records (features a
        Transform makes). Without: one streamed pass over the whole split (``count``)."""
        if statistics is None:
            return self.count(patterns)
        facts = split_statistics.check(split_statistics.parse(statistics), self.raw_feature_sizes(),
                                       self.adapter.label_key, self.task.label_problem, source)
        for _ in self.batches(patterns, sample):
            pass
        return facts.examples

    def serving_fn(self, model) -> Callable:
        """``serving_default`` for a SavedModel of ``model``: serialized raw tf.Examples in,
        the model's outputs out (parse, transform, reshape, model)."""

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(examples):
            x = self.to_model(self.adapter.parse_for_serving(examples))
            return {"outputs": model(self.keras_x(x), training=False)}

        return serve


class ImageAdapter(InputAdapter):
    """One fixed-length image feature (``DataSpec``): the built-in datasets' layout."""

    def __init__(self, spec: DataSpec):
        self.spec, self.label_key, self.num_classes = spec, spec.label_key, spec.num_classes
        self._parse = image_data.parse_fn(spec)

    def parse(self, serialized):
        x, y = self._parse(serialized)
        return {self.spec.image_key: x}, y

    def describe(self) -> str:
        s = self.spec
        return (f"DataSpec(image_key={s.image_key!r}, label_key={s.label_key!r}, image_shape="
                f"{s.image_shape}, image_dtype={s.image_dtype!r})")

    def hint(self) -> str:
        s = self.spec
        return f"{image_data.image_requirement(s)}; fix the data or the DataSpec"


class FeatureAdapter(InputAdapter):
    """Features parsed with ``feature_spec`` and, with ``transform``, transformed (e.g. TFT's
    ``transform_features_layer()`` on raw Examples); the label is looked up among the transformed
    features first, then the parsed ones."""

    serves_examples = True

    def __init__(self, feature_spec: Dict[str, object], label_key: str,
                 transform: Optional[Callable] = None, source: str = "the Examples",
                 num_classes: Optional[int] = None,
                 serving: Optional[Tuple[Dict[str, object], Optional[Callable]]] = None):
        """``serving``: (raw feature spec, transform) for ``parse_for_serving`` when the training
        Examples are already transformed (a SavedModel still serves raw tf.Examples)."""
        if transform is None and label_key not in feature_spec:
            raise DataError(f"label feature {label_key!r} is not among the features of {source} "
                            f"({sorted(feature_spec)}): set FeatureSpec.label_key to one of them")
        self.feature_spec, self.label_key = dict(feature_spec), label_key
        self.transform, self.source, self.num_classes = transform, source, num_classes
        self.serving_spec, self.serving_transform = serving or (self.feature_spec, transform)

    def describe(self) -> str:
        return self.source

    def hint(self) -> str:
        return (f"each example needs the features {sorted(self.feature_spec)}; fix the data, or "
                "wire the schema / Transform graph that describes it")

    def _features(self, serialized, spec, transform):
        """(raw features, model features). The transform gets the raw features exactly as
        ``tf.io.parse_example`` returns them (sparse for variable-length ones, as TFX's own
        serving signatures hand them over); only what comes out is densified."""
        parsed = tf.io.parse_example(serialized, spec)
        raw = {k: _dense(v) for k, v in parsed.items()}
        if transform is None:
            return raw, raw
        try:
            out = transform(parsed)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            given = ", ".join(f"{k!r} {_kind(v)}" for k, v in sorted(parsed.items()))
            raise TransformError(
                f"the Transform ({self.source}) failed on raw features parsed with its own raw "
                f"feature spec [{given}]: {_message(e)} — the preprocessing_fn fails on these "
                "inputs (e.g. a feature it reads as dense arrives sparse because the schema "
                "lets it be missing): fix the preprocessing_fn or the schema") from e
        return raw, {k: _dense(v) for k, v in out.items()}

    def parse(self, serialized):
        raw, feats = self._features(serialized, self.feature_spec, self.transform)
        if self.label_key in feats:
            label = feats[self.label_key]
        elif self.label_key in raw:
            label = raw[self.label_key]
        else:
            raise DataError(f"label feature {self.label_key!r} is neither a feature of "
                            f"{self.source} ({sorted(raw)}) nor a transformed one "
                            f"({sorted(feats)}): set FeatureSpec.label_key to one of them")
        feats = {k: v for k, v in feats.items() if k != self.label_key}
        return feats, tf.reshape(label, [-1])

    def _raw_label(self, spec) -> Optional[str]:
        """The raw feature serving examples lack: the label, or the raw feature a transformed
        label was made from (``species`` for ``species_xf``)."""
        if self.label_key in spec:
            return self.label_key
        stems = [k for k in spec if self.label_key.startswith(k)]
        return max(stems, key=len) if stems else None

    def parse_for_serving(self, serialized):
        spec = {k: v for k, v in self.serving_spec.items()
                if k != self._raw_label(self.serving_spec)}
        return self._features(serialized, spec, self.serving_transform)[1]

    def serving_trackables(self):
        t = self.serving_transform
        return {"tft_layer": t} if isinstance(t, tf.Module) else {}


def first_records(patterns, n: int) -> List[bytes]:
    """Up to ``n`` serialized records from the first file(s) of ``patterns``."""
    files = resolve_files(patterns)
    ds = tf.data.TFRecordDataset(files, compression_type=image_data.compression_of(files))
    try:
        out = [r.numpy() for r in ds.take(n)]
    except tf.errors.DataLossError as e:
        image_data.check_framing(files)  # names the file and the record
        raise DataError(f"corrupt TFRecord among {files[:3]}: {e.message.splitlines()[0]} — "
                        "regenerate the data or drop the damaged file") from e
    if not out:
        raise DataError(f"no examples in {files[:3]}: the split is empty")
    return out


def feature_spec_from_records(patterns, limit: int = 16) -> Dict[str, tf.io.FixedLenFeature]:
    """A FixedLenFeature spec read off the first records (kind and length of each feature), for
    Examples with neither a schema nor a Transform graph."""
    files = resolve_files(patterns)
    ds = tf.data.TFRecordDataset(files[:1], compression_type=image_data.compression_of(files))
    spec: Dict[str, tf.io.FixedLenFeature] = {}
    for raw in ds.take(limit):
        ex = tf.train.Example.FromString(raw.numpy())
        for k, f in ex.features.feature.items():
            kind = f.WhichOneof("kind")
            dtype = {"float_list": tf.float32, "int64_list": tf.int64,
                     "bytes_list": tf.string}.get(kind)
            n = len(getattr(f, kind).value) if kind else 0
            if dtype is not None and k not in spec:
                spec[k] = tf.io.FixedLenFeature([] if n == 1 else [n], dtype)
    if not spec:
        raise DataError(f"{files[0]} has no records with features")
    return spec


def bind_model(adapter: InputAdapter, inputs: Sequence[ModelInput], patterns,
               num_classes: int, task: Optional[tasks.Task] = None) -> BoundInputs:
    """adapter.bind after checking num_classes: the one call the components make.
    ``num_classes``: the model's output width; ``task``: None for a multiclass model."""
    if adapter.num_classes is not None and adapter.num_classes != num_classes:
        raise InputMismatchError(f"the model has {num_classes} output classes but the input "
                                 f"spec says num_classes={adapter.num_classes}: fix one of them")
    return adapter.bind(inputs, patterns, num_classes, task)

