"""TFX's everyday tabular pipeline, with tfx-qat added: a raw CSV with empty cells and strings,
Transform (z-score, vocabulary, bucketize, a passed-through integer category, a label made by
the Transform), a dict-input wide-and-deep Keras model whose builder takes the ``hidden_units``
its ``run_fn`` computes, built in a ``MirroredStrategy`` scope and saved with
``tf.saved_model.save`` (module ``modules/wide_deep_trainer.py``), gated by a ``BinaryAccuracy``
EvalConfig with value and change thresholds.

Data: the Palmer penguins (CC0) as the ``palmerpenguins`` package ships them (344 rows; ``NA``
written as empty cells, as a CSV export leaves them: 2 rows miss every measurement, 11 the sex).
"""
from __future__ import annotations

import csv
import os
from typing import List, Optional

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow_model_analysis as tfma
from tfx.orchestration import pipeline

from tfx_qat.pipelines import csv_transform
from tfx_qat.quant_lib.config import ExportConfig, FeatureSpec, QuantizationConfig

MODULE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "modules",
                           "wide_deep_trainer.py")
RAW_LABEL_KEY = "species"  # the CSV column the label is made from
LABEL_KEY = "species_xf"  # made by the module's preprocessing_fn (1: Adelie)
# What the module's run_fn computes and passes to _build_keras_model (16 * 0.5 ** i, 2 layers).
BUILDER_KWARGS = {"hidden_units": [16, 8]}


def write_csv(path: str) -> int:
    """The palmerpenguins CSV with ``NA`` as empty cells; returns the number of rows."""
    import palmerpenguins
    src = os.path.join(os.path.dirname(palmerpenguins.__file__), "data", "penguins.csv")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    n = 0
    with open(src, newline="") as f, open(path, "w", newline="") as out:
        writer = csv.writer(out)
        for i, row in enumerate(csv.reader(f)):
            writer.writerow(["" if v == "NA" else v for v in row])
            n += i > 0
    return n


def eval_config(min_accuracy: float = 0.6, max_drop: float = 0.05) -> tfma.EvalConfig:
    """The gate a team's Evaluator would carry: BinaryAccuracy >= ``min_accuracy`` and at most
    ``max_drop`` below the baseline (here: the float model; int8 is the candidate)."""
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default", label_key=LABEL_KEY,
                                    preprocessing_function_names=["transform_features"])],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(
                class_name="BinaryAccuracy",
                threshold=tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}),
                    change_threshold=tfma.GenericChangeThreshold(
                        direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                        absolute={"value": -max_drop})))])])


def create_pipeline(pipeline_root: str, data_root: str, serving_dir: str, metadata_path: str,
                    train_steps: int = 300, qat_epochs: int = 10,
                    gate: Optional[tfma.EvalConfig] = None, enable_cache: bool = True,
                    beam_pipeline_args: Optional[List[str]] = None) -> pipeline.Pipeline:
    stock = csv_transform.stock_steps(data_root, MODULE_FILE, train_steps, 5,
                                      infer_feature_shape=True)
    data = FeatureSpec(label_key=LABEL_KEY)
    qat = QuantizationConfig(data=data, model_fn="_build_keras_model",
                             model_fn_kwargs=BUILDER_KWARGS, epochs=qat_epochs, batch_size=32,
                             learning_rate=1e-3)
    export = ExportConfig(data=data, representative_examples=128, parity_examples=100)
    nodes = list(stock.values()) + csv_transform.qat_steps(
        stock, MODULE_FILE, qat, export, gate or eval_config(), serving_dir)
    return csv_transform.assemble("wide-deep-qat", pipeline_root, metadata_path, nodes,
                                  enable_cache, beam_pipeline_args)
