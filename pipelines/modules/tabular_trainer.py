"""TFX Trainer module file for tabular data, written the way TFX's examples write theirs: Examples
read with ``fn_args.data_accessor`` and the schema, one Keras ``Input`` per feature (named after
it), a small MLP, and the head of the task — a one-unit logit with BinaryCrossentropy
(from_logits) for binary, one linear unit with MeanSquaredError for regression. QuantizeTrainer
reads the task from the loss this module compiles (saved in the SavedModel's training config).

custom_config keys: ``label_key`` (required), ``task`` ("binary" | "regression", required),
``epochs`` (30), ``batch_size`` (32), ``learning_rate`` (3e-3), ``seed`` (0).
"""
import logging
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402
from tfx_bsl.public import tfxio  # noqa: E402


def _dataset(fn_args, schema, files, label_key: str, batch_size: int, shuffle: bool, seed: int):
    return fn_args.data_accessor.tf_dataset_factory(
        files, tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=label_key,
                                              shuffle=shuffle, shuffle_seed=seed, num_epochs=1),
        schema)


def build_model(features, task: str, mean, variance) -> keras.Model:
    """Each feature standardized on its own before the concatenation: int8 concatenation shares
    one scale, so raw features of different ranges (area ~1e3, smoothness ~0.1) would lose the
    small ones (seen: QAT collapsed to AUC 0.5 with one Normalization after the Concatenate)."""
    inputs = {f: keras.Input(shape=(1,), name=f) for f in features}
    x = keras.layers.Concatenate(name="features")([
        keras.layers.Normalization(mean=m, variance=v, name=f"{f}_z")(inputs[f])
        for f, m, v in zip(features, mean, variance)])
    x = keras.layers.Dense(32, activation="relu", name="hidden1")(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden2")(x)
    out = keras.layers.Dense(1, name="logit" if task == "binary" else "prediction")(x)
    return keras.Model(inputs, out, name=f"tabular_{task}")


def compile_for(model, task: str, learning_rate: float) -> None:
    if task == "binary":
        model.compile(keras.optimizers.Adam(learning_rate),
                      keras.losses.BinaryCrossentropy(from_logits=True),
                      metrics=[keras.metrics.AUC(from_logits=True, name="auc")])
    elif task == "regression":
        model.compile(keras.optimizers.Adam(learning_rate), keras.losses.MeanSquaredError(),
                      metrics=[keras.metrics.MeanAbsoluteError(name="mae")])
    else:
        raise ValueError(f"custom_config task must be 'binary' or 'regression', got {task!r}")


def run_fn(fn_args):
    """TFX Trainer entry point: trains the float model and saves a Keras SavedModel."""
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx.utils import io_utils
    cfg = dict(fn_args.custom_config or {})
    label_key, task = cfg["label_key"], cfg["task"]
    seed, batch_size = int(cfg.get("seed", 0)), int(cfg.get("batch_size", 32))
    keras.utils.set_random_seed(seed)
    schema = io_utils.parse_pbtxt_file(fn_args.schema_path, schema_pb2.Schema())
    features = sorted(k for k in schema_utils.schema_as_feature_spec(schema).feature_spec
                      if k != label_key)
    train = _dataset(fn_args, schema, fn_args.train_files, label_key, batch_size, True, seed)
    # Standardize with the training split's statistics (Normalization layers, quantized by QAT).
    rows = np.concatenate([np.concatenate([x[f].numpy() for f in features], axis=-1)
                           for x, _ in train])
    model = build_model(features, task, rows.mean(axis=0), rows.var(axis=0) + 1e-12)
    compile_for(model, task, float(cfg.get("learning_rate", 3e-3)))
    hist = model.fit(train, epochs=int(cfg.get("epochs", 30)), verbose=0,
                     validation_data=_dataset(fn_args, schema, fn_args.eval_files, label_key, 256,
                                              False, seed))
    logging.info("tabular %s model: %s", task, {k: v[-1] for k, v in hist.history.items()})
    # With the optimizer, the SavedModel keeps its training config (the loss names the task).
    model.save(fn_args.serving_model_dir, save_format="tf")
