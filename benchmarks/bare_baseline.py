"""The script a user would write instead of the pipeline: the same ML work, plain TFMOT + TFLite.

Run by ``make bench`` as its own process and timed as a whole (interpreter start, imports, data
loading included), beside ``make run``'s pipeline on the same data and epochs: float training,
QAT (TFMOT's ``quantize_model`` as is), full-integer export, and both models scored on the
test set (float Keras, int8 TFLite). No TFX, no checks, no artifacts, no report.

    python -m benchmarks.bare_baseline --out bare.json [--float-epochs 5 --qat-epochs 1]
"""
import argparse
import json
import os
import time

T0 = time.time()
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfx_qat.pipelines.data import load_fashion_mnist  # noqa: E402  (the Debian package's IDX files)
from tfx_qat.pipelines.modules.cnn_trainer import build_model  # noqa: E402  (the user's model; its
# module imports tfx_qat.quant_lib.qat, so AutoGraph skips tf_keras here as in the pipeline)
from tfx_qat.quant_lib.config import DataSpec  # noqa: E402


def int8_top1(model_bytes: bytes, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    interp = tf.lite.Interpreter(model_content=model_bytes, num_threads=1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zero = inp["quantization"]
    hits = 0
    for i in range(0, len(x), batch):
        xb = np.clip(np.round(x[i:i + batch] / scale + zero), -128, 127).astype(np.int8)
        interp.resize_tensor_input(inp["index"], xb.shape)
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], xb)
        interp.invoke()
        hits += int(np.sum(np.argmax(interp.get_tensor(out["index"]), -1) == y[i:i + batch]))
    return hits / len(x)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--float-epochs", type=int, default=5)
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--qat-lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    phases = {"imports": time.time() - T0}

    t = time.time()
    xt, yt, xe, ye = load_fashion_mnist()
    xt, xe = (xt.astype(np.float32) / 255.0)[..., None], (xe.astype(np.float32) / 255.0)[..., None]
    phases["load_data"] = time.time() - t

    t = time.time()
    keras.utils.set_random_seed(0)
    model = build_model(DataSpec(image_shape=(28, 28, 1), num_classes=10))
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    model.fit(xt, yt, batch_size=args.batch_size, epochs=args.float_epochs, verbose=0)
    phases["float_training"] = time.time() - t

    t = time.time()
    qat = tfmot.quantization.keras.quantize_model(model)
    qat.compile(keras.optimizers.Adam(args.qat_lr), keras.losses.SparseCategoricalCrossentropy(),
                metrics=["accuracy"])
    qat.fit(xt, yt, batch_size=args.batch_size, epochs=args.qat_epochs, verbose=0)
    phases["qat"] = time.time() - t

    t = time.time()
    rep = xt[np.random.default_rng(0).choice(len(xt), 200, replace=False)]
    conv = tf.lite.TFLiteConverter.from_keras_model(qat)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rep[i:i + 1]] for i in range(len(rep)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    int8_bytes = conv.convert()
    float_bytes = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    phases["export"] = time.time() - t

    t = time.time()
    float_acc = float(np.mean(np.argmax(model.predict(xe, batch_size=256, verbose=0), -1) == ye))
    int8_acc = int8_top1(int8_bytes, xe, ye)
    phases["evaluation"] = time.time() - t

    result = {"float_accuracy": float_acc, "int8_accuracy": int8_acc,
              "float_tflite_bytes": len(float_bytes), "int8_tflite_bytes": len(int8_bytes),
              "train_examples": len(xt), "eval_examples": len(xe), "phases_seconds": phases,
              "seconds_in_process": time.time() - T0}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
