"""TFX Trainer module file: a MobileNet-style depthwise-separable CNN in tf_keras (float training).

Used by the stock TFX Trainer via ``module_file``. It lives alone in this directory because TFX
packages every ``.py`` file next to a module file into the user-code wheel.

custom_config keys: ``data`` (a DataSpec dict, required), ``epochs`` (3), ``batch_size`` (64),
``learning_rate`` (1e-3), ``width`` (32: channels of the first conv), ``seed`` (0).
"""
import json
import logging
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfx_qat.quant_lib.qat import saving  # noqa: E402
from tfx_qat.quant_lib.config import DataSpec  # noqa: E402
from tfx_qat.quant_lib.examples.data import make_dataset  # noqa: E402
from tfx_qat.quant_lib.qat.train import TRAINING_STATS_FILE, StepTimer  # noqa: E402


def _conv_bn_relu6(x, filters, stride, name):
    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                            name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu6")(x)


def _dw_separable(x, filters, stride, name):
    x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                     name=f"{name}_dw")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_dw_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_dw_relu6")(x)
    x = keras.layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{name}_pw")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_pw_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_pw_relu6")(x)


def build_model(spec: DataSpec, width: int = 32) -> keras.Model:
    """Conv-BN-ReLU6 stem, four depthwise-separable blocks, GAP, Dense, Softmax.

    BN momentum 0.9 (not 0.99): small datasets give few steps, and slow moving statistics would
    leave inference-mode BN (and so the folded int8 model) far from the trained network.
    """
    inputs = keras.Input(shape=spec.image_shape, name=spec.image_key)
    x = _conv_bn_relu6(inputs, width, 2, "stem")
    x = _dw_separable(x, 2 * width, 1, "block1")
    x = _dw_separable(x, 4 * width, 2, "block2")
    x = _dw_separable(x, 4 * width, 1, "block3")
    x = _dw_separable(x, 8 * width, 2, "block4")
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(spec.num_classes, name="logits")(x)
    outputs = keras.layers.Softmax(name="probabilities")(x)
    return keras.Model(inputs, outputs, name="mobilenet_style_cnn")


def run_fn(fn_args):
    """TFX Trainer entry point: trains the float model and saves a Keras SavedModel."""
    cfg = dict(fn_args.custom_config or {})
    if "data" not in cfg:
        raise ValueError("Trainer custom_config needs 'data': a DataSpec dict (image_key, label_key, "
                         "image_shape, num_classes); see pipelines/pipeline.py")
    spec = DataSpec.from_dict(cfg["data"])
    seed = int(cfg.get("seed", 0))
    batch_size = int(cfg.get("batch_size", 64))
    keras.utils.set_random_seed(seed)
    train_ds = make_dataset(fn_args.train_files, spec, batch_size, shuffle=True, seed=seed)
    model = build_model(spec, int(cfg.get("width", 32)))
    model.compile(optimizer=keras.optimizers.Adam(float(cfg.get("learning_rate", 1e-3))),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    timer = StepTimer("float")
    # No validation pass: QuantEvaluator scores the float model on the eval split in Beam, and
    # Keras' one validation at the end of fit cost ~45 s of a 165 s Trainer (make bench, MLMD).
    hist = model.fit(train_ds, epochs=int(cfg.get("epochs", 3)), callbacks=[timer], verbose=0)
    # A Keras SavedModel with its serving signature; built-in layers only, so without per-layer
    # traces (~2.5 s less to write, ~1.5 s less for each of the three components that load it).
    saving.save_model(model, fn_args.serving_model_dir)
    logging.info("float model written to %s", fn_args.serving_model_dir)
    # Training facts go to the ModelRun artifact (not the serving dir, which Pusher would ship).
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, TRAINING_STATS_FILE), "w") as f:
        f.write(json.dumps({"seconds_per_step": timer.seconds_per_step, "batch_size": batch_size,
                            "final_train_accuracy": float(hist.history["accuracy"][-1])}))
