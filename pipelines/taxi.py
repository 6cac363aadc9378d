"""TFX's own Chicago taxi example (native Keras), unmodified up to the Trainer, with tfx-qat added.

The stock steps are those of ``tfx/examples/chicago_taxi_pipeline/taxi_pipeline_native_keras.py``:
CsvExampleGen on the CSV shipped with tfx (``data/simple/data.csv``: empty cells, so SchemaGen
infers those columns as sparse raw features) -> StatisticsGen -> SchemaGen -> Transform -> Trainer with the
installed ``taxi_utils_native_keras.py`` (dict-input wide-and-deep model, ``_build_keras_model
(hidden_units)`` called by ``run_fn`` with computed sizes inside a MirroredStrategy scope, saved
with ``tf.saved_model.save``). tfx-qat's four components are the lines a user adds; the gate is
the example's own Evaluator EvalConfig (BinaryAccuracy >= 0.6 and no drop vs the baseline).
"""
from __future__ import annotations

import os
from typing import List, Optional

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow_model_analysis as tfma
from tfx.orchestration import pipeline

from tfx_qat.pipelines import csv_transform
from tfx_qat.quant_lib.config import ExportConfig, FeatureSpec, QuantizationConfig

# taxi_utils_native_keras.run_fn: hidden_units = [max(2, int(100 * 0.7 ** i)) for i in range(4)]
BUILDER_KWARGS = {"hidden_units": [max(2, int(100 * 0.7 ** i)) for i in range(4)]}


def _example_dir() -> str:
    import tfx.examples.chicago_taxi_pipeline as taxi
    return os.path.dirname(taxi.__file__)


def module_file() -> str:
    """``taxi_utils_native_keras.py`` as installed with tfx (used unmodified)."""
    return os.path.join(_example_dir(), "taxi_utils_native_keras.py")


def data_csv() -> str:
    return os.path.join(_example_dir(), "data", "simple", "data.csv")


def taxi_eval_config() -> tfma.EvalConfig:
    """The EvalConfig of TFX's ``taxi_pipeline_native_keras.py`` (its Evaluator's gate), with the
    float model as the baseline and the int8 one as the candidate."""
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default", label_key="tips_xf",
                                    preprocessing_function_names=["transform_features"])],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(
                class_name="BinaryAccuracy",
                threshold=tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(lower_bound={"value": 0.6}),
                    change_threshold=tfma.GenericChangeThreshold(
                        direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                        absolute={"value": -1e-10})))])])


def create_pipeline(pipeline_root: str, data_root: str, serving_dir: str, metadata_path: str,
                    train_steps: int = 1000, qat_epochs: int = 1,
                    eval_config: Optional[tfma.EvalConfig] = None, enable_cache: bool = True,
                    beam_pipeline_args: Optional[List[str]] = None) -> pipeline.Pipeline:
    """TFX's steps as ``taxi_pipeline_native_keras.py`` has them (1000 / 150 steps, schema with
    inferred shapes), then the lines a user adds."""
    module = module_file()
    stock = csv_transform.stock_steps(data_root, module, train_steps, 150,
                                      infer_feature_shape=True)
    data = FeatureSpec(label_key="tips_xf")
    qat = QuantizationConfig(data=data, model_fn="_build_keras_model",
                             model_fn_kwargs=BUILDER_KWARGS, epochs=qat_epochs, batch_size=40,
                             learning_rate=1e-4)
    nodes = list(stock.values()) + csv_transform.qat_steps(
        stock, module, qat, ExportConfig(data=data, parity_examples=500),
        eval_config or taxi_eval_config(), serving_dir)
    return csv_transform.assemble("taxi-qat", pipeline_root, metadata_path, nodes, enable_cache,
                                  beam_pipeline_args)
