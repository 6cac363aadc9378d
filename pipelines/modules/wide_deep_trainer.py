"""TFX Transform + Trainer module of the wide-and-deep pipeline (``pipelines/wide_deep.py``), written
the way TFX's everyday tabular modules are (TFX's taxi ``taxi_utils_native_keras.py`` pattern):

- raw CSV columns with empty cells arrive as sparse features and are filled in the
  ``preprocessing_fn`` (``_fill_in_missing``); floats are z-scored, strings go through a vocabulary,
  one integer column is bucketized, one integer category is passed through (shifted to 0..2), and
  the label (``species_xf``: 1 for an Adelie penguin) is made by the Transform from a raw column;
- the model is Functional from a **dict** of ``Input``s (float32 and int32), ``Normalization`` on
  the floats (deep part: Dense layers), ``CategoryEncoding`` one-hot on every id (wide part), one
  sigmoid unit, ``loss='binary_crossentropy'``;
- ``_build_keras_model(hidden_units=None)`` gets the ``hidden_units`` that ``run_fn`` computes,
  inside a ``MirroredStrategy`` scope; the model is saved with ``tf.saved_model.save`` with a
  ``serving_default`` signature on raw tf.Examples and a ``transform_features`` one.
"""
import os
from typing import List, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras as keras  # noqa: E402
from tfx_bsl.public import tfxio  # noqa: E402

DENSE_FLOAT_KEYS = ["bill_length_mm", "bill_depth_mm", "body_mass_g"]
VOCAB_KEYS = ["island", "sex"]
BUCKET_KEYS = ["flipper_length_mm"]
CATEGORICAL_KEYS = ["year"]
LABEL_KEY = "species"
VOCAB_SIZE, OOV_SIZE, BUCKETS = 10, 1, 4
FIRST_YEAR, YEARS = 2007, 3


def _xf(key: str) -> str:
    return key + "_xf"


def _fill_in_missing(x, default=None):
    """A sparse [batch, 0 or 1] feature (a CSV column with empty cells) as a dense [batch] one."""
    if not isinstance(x, tf.sparse.SparseTensor):
        return tf.squeeze(x, axis=1) if x.shape.rank == 2 else x
    if default is None:
        default = "" if x.dtype == tf.string else 0
    dense = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]),
                               default)
    return tf.squeeze(dense, axis=1)


def preprocessing_fn(inputs):
    """tf.Transform's callback: raw (sparse where cells can be empty) features -> model features."""
    out = {}
    for key in DENSE_FLOAT_KEYS:
        out[_xf(key)] = tft.scale_to_z_score(tf.cast(_fill_in_missing(inputs[key]), tf.float32))
    for key in VOCAB_KEYS:
        out[_xf(key)] = tft.compute_and_apply_vocabulary(
            _fill_in_missing(inputs[key]), top_k=VOCAB_SIZE, num_oov_buckets=OOV_SIZE)
    for key in BUCKET_KEYS:
        out[_xf(key)] = tft.bucketize(tf.cast(_fill_in_missing(inputs[key]), tf.float32), BUCKETS)
    for key in CATEGORICAL_KEYS:
        out[_xf(key)] = tf.clip_by_value(
            _fill_in_missing(inputs[key], FIRST_YEAR) - FIRST_YEAR, 0, YEARS - 1)
    out[_xf(LABEL_KEY)] = tf.cast(tf.equal(_fill_in_missing(inputs[LABEL_KEY]), "Adelie"),
                                  tf.int64)
    return out


def _build_keras_model(hidden_units: Optional[List[int]] = None) -> keras.Model:
    """Wide (one-hot ids) and deep (normalized floats, Dense layers) parts joined before one
    sigmoid unit."""
    deep_in = {_xf(k): keras.Input(shape=(1,), name=_xf(k), dtype=tf.float32)
               for k in DENSE_FLOAT_KEYS}
    sizes = {**{_xf(k): VOCAB_SIZE + OOV_SIZE for k in VOCAB_KEYS},
             **{_xf(k): BUCKETS for k in BUCKET_KEYS},
             **{_xf(k): YEARS for k in CATEGORICAL_KEYS}}
    wide_in = {k: keras.Input(shape=(1,), name=k, dtype="int32") for k in sizes}
    deep = keras.layers.concatenate([keras.layers.Normalization()(x) for x in deep_in.values()])
    for units in hidden_units or [32, 16]:
        deep = keras.layers.Dense(units, activation="relu")(deep)
    wide = keras.layers.concatenate([
        keras.layers.CategoryEncoding(num_tokens=n, output_mode="one_hot")(wide_in[k])
        for k, n in sizes.items()])
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.concatenate([deep, wide]))
    model = keras.Model({**deep_in, **wide_in}, out)
    model.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(1e-2),
                  metrics=[keras.metrics.BinaryAccuracy()])
    return model


def _input_fn(files, data_accessor, tf_transform_output, batch_size: int):
    return data_accessor.tf_dataset_factory(
        files, tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=_xf(LABEL_KEY),
                                              shuffle_seed=0),
        tf_transform_output.transformed_metadata.schema)


def _serving_signature(model, tf_transform_output):
    model.tft_layer_inference = tf_transform_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def serve_tf_examples_fn(serialized):
        spec = tf_transform_output.raw_feature_spec()
        spec.pop(LABEL_KEY)
        transformed = model.tft_layer_inference(tf.io.parse_example(serialized, spec))
        return {"outputs": model(transformed)}

    return serve_tf_examples_fn


def _transform_signature(model, tf_transform_output):
    model.tft_layer_eval = tf_transform_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def transform_features_fn(serialized):
        spec = tf_transform_output.raw_feature_spec()
        return model.tft_layer_eval(tf.io.parse_example(serialized, spec))

    return transform_features_fn


def run_fn(fn_args):
    """TFX Trainer entry point. ``hidden_units`` are computed here and passed to the builder."""
    first_layer, layers, decay = 16, 2, 0.5
    hidden_units = [max(2, int(first_layer * decay ** i)) for i in range(layers)]
    keras.utils.set_random_seed(0)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, 32)
    evals = _input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, 32)
    with tf.distribute.MirroredStrategy().scope():
        model = _build_keras_model(hidden_units=hidden_units)
    model.fit(train, steps_per_epoch=fn_args.train_steps, validation_data=evals,
              validation_steps=fn_args.eval_steps, verbose=0)
    signatures = {"serving_default": _serving_signature(model, tf_transform_output),
                  "transform_features": _transform_signature(model, tf_transform_output)}
    tf.saved_model.save(model, fn_args.serving_model_dir, signatures=signatures)
