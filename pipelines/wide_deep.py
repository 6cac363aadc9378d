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

import quant_lib  # noqa: F401
import tensorflow_model_analysis as tfma
from tfx.components import CsvExampleGen, SchemaGen, StatisticsGen, Trainer, Transform
from tfx.orchestration import metadata, pipeline
from tfx.proto import pusher_pb2, trainer_pb2

from components import IntegerExporter, QuantEvaluator, QuantizeTrainer, VerifiedPusher
from quant_lib.config import EvalConfig, ExportConfig, FeatureSpec, QuantizationConfig

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
    # --- the team's pipeline, as it is -------------------------------------------------------
    example_gen = CsvExampleGen(input_base=data_root)
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"],
                           infer_feature_shape=True)
    transform = Transform(examples=example_gen.outputs["examples"],
                          schema=schema_gen.outputs["schema"], module_file=MODULE_FILE)
    trainer = Trainer(module_file=MODULE_FILE, examples=transform.outputs["transformed_examples"],
                      transform_graph=transform.outputs["transform_graph"],
                      schema=schema_gen.outputs["schema"],
                      train_args=trainer_pb2.TrainArgs(num_steps=train_steps),
                      eval_args=trainer_pb2.EvalArgs(num_steps=5))
    # --- tfx-qat: the lines a user adds -----------------------------------------------------
    data = FeatureSpec(label_key=LABEL_KEY)
    wiring = dict(examples=example_gen.outputs["examples"],
                  transform_graph=transform.outputs["transform_graph"])
    quantize_trainer = QuantizeTrainer(
        **wiring, base_model=trainer.outputs["model"], schema=schema_gen.outputs["schema"],
        statistics=statistics_gen.outputs["statistics"], module_file=MODULE_FILE,
        config=QuantizationConfig(data=data, model_fn="_build_keras_model",
                                  model_fn_kwargs=BUILDER_KWARGS, epochs=qat_epochs,
                                  batch_size=32, learning_rate=1e-3))
    exporter = IntegerExporter(**wiring, model=quantize_trainer.outputs["qat_model"],
                               config=ExportConfig(data=data, representative_examples=128,
                                                   parity_examples=100))
    evaluator = QuantEvaluator(**wiring, model=trainer.outputs["model"],
                               quantized_model=exporter.outputs["quantized_model"],
                               config=EvalConfig(data=data), eval_config=gate or eval_config())
    pusher = VerifiedPusher(
        model=exporter.outputs["quantized_model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_dir)))
    return pipeline.Pipeline(
        pipeline_name="wide-deep-qat", pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, transform, trainer,
                    quantize_trainer, exporter, evaluator, pusher],
        enable_cache=enable_cache,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(metadata_path),
        beam_pipeline_args=beam_pipeline_args or [])
