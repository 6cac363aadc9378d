"""Runs QAT under a tf.distribute strategy in its own process (logical devices and TF_CONFIG must
be set before TensorFlow starts). Used by test_distribute.py; not a test itself.

usage: dist_qat_worker.py {mirrored|multi_worker_mirrored} OUT_DIR
"""
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

mode, out_dir = sys.argv[1], sys.argv[2]
if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # noqa: E402

from tfx_qat.pipelines.data import load_digits  # noqa: E402
from tfx_qat.pipelines.modules.cnn_trainer import build_model  # noqa: E402
from tfx_qat.quant_lib.tflite import convert, interpreter, validate  # noqa: E402
from tfx_qat.quant_lib.qat import saving, train
from tfx_qat.quant_lib.config import DataSpec, QuantizationConfig  # noqa: E402

spec = DataSpec(image_shape=(8, 8, 1))
xt, yt, xe, ye = load_digits()
xt, xe = xt[..., None], xe[..., None]
cfg = QuantizationConfig(data=spec, epochs=4, batch_size=64, learning_rate=3e-3,
                         distribution=mode, steps_per_epoch=30)


def train_ds():
    return tf.data.Dataset.from_tensor_slices((xt, yt)).shuffle(2000, seed=0).repeat().batch(64)


def float_model():
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    return build_model(spec, width=8)


qat_model, decisions, stats = train.run_qat(float_model, train_ds, cfg)
path = os.path.join(out_dir, "qat_model")
saving.save_model(qat_model, path)  # non-chief workers save to a scratch dir
result = {"replicas": stats["replicas"], "strategy": stats["strategy"], "chief": train.is_chief()}
if train.is_chief():
    model_bytes = convert.convert_int8(saving.load_model(path), xt[:100])
    report = validate.validate_integer(model_bytes)
    scores = interpreter.TFLiteClassifier(model_bytes).predict(xe)
    result.update(int8_ops=report.num_ops,
                  int8_accuracy=float(np.mean(np.argmax(scores, -1) == ye)))
    with open(os.path.join(out_dir, "result.json"), "w") as f:
        json.dump(result, f)
print(json.dumps(result))
