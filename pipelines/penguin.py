"""TFX's own penguin example pipeline, unmodified up to the Trainer, with tfx-qat added.

The stock steps are those of ``tfx/examples/penguin/penguin_pipeline_local.py`` (CsvExampleGen ->
StatisticsGen -> SchemaGen -> Transform -> Trainer, module ``penguin_utils_keras.py`` shipped with
tfx, 100 training steps). tfx-qat's four components are the lines a user adds: they read the same
raw Examples through the same Transform graph, rebuild the Trainer's model with the module's own
``_make_keras_model`` (the module saves with ``tf.saved_model.save``), gate the int8 model with
the example's own Evaluator EvalConfig (float model as the baseline), and push the int8 TFLite
model only when it is blessed.
"""
from __future__ import annotations

import csv
import os
from typing import List, Optional

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from tfx_qat.components import qat_chain
from tfx_qat.quant_lib.config import ExportConfig, FeatureSpec, QuantizationConfig


def penguin_module_file() -> str:
    """``penguin_utils_keras.py`` as installed with tfx (used unmodified)."""
    import tfx.examples.penguin as penguin
    return os.path.join(os.path.dirname(penguin.__file__), "penguin_utils_keras.py")


PROCESSED_CSV = "penguins_processed.csv"
MEASUREMENTS = (("culmen_length_mm", "bill_length_mm"), ("culmen_depth_mm", "bill_depth_mm"),
                ("flipper_length_mm", "flipper_length_mm"), ("body_mass_g", "body_mass_g"))
SPECIES = ("Adelie", "Chinstrap", "Gentoo")


def write_processed_csv(path: str) -> int:
    """TFX's ``penguins_processed.csv``, made from the pinned ``palmerpenguins`` package the way
    TFX made its file: rows with any missing value dropped, the four measurements min-max scaled
    to [0, 1] (TFX's column names), species as 0/1/2. Gives 333 rows, each equal to one of TFX's
    334: TFX's source spelled one Gentoo's unknown sex '.', not NA, and kept it. Returns the rows."""
    import palmerpenguins
    src = os.path.join(os.path.dirname(palmerpenguins.__file__), "data", "penguins.csv")
    with open(src, newline="") as f:
        rows = [r for r in csv.DictReader(f) if "NA" not in r.values()]
    columns = {ours: [float(r[theirs]) for r in rows] for ours, theirs in MEASUREMENTS}
    scaled = {c: [(v - min(vs)) / (max(vs) - min(vs)) for v in vs] for c, vs in columns.items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["species"] + list(columns))
        for i, r in enumerate(rows):
            writer.writerow([SPECIES.index(r["species"])] + [scaled[c][i] for c in columns])
    return len(rows)


def penguin_eval_config(accuracy_threshold: float = 0.6) -> tfma.EvalConfig:
    """The EvalConfig of TFX's ``penguin_pipeline_local.py`` (its Evaluator's gate), verbatim:
    SparseCategoricalAccuracy >= 0.6 and no drop against the baseline. Here the baseline is the
    float model and the candidate the int8 one (QuantEvaluator replaces the model_specs)."""
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name='serving_default',
                label_key='species_xf',
                preprocessing_function_names=['transform_features'])
        ],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(metrics=[
                tfma.MetricConfig(
                    class_name='SparseCategoricalAccuracy',
                    threshold=tfma.MetricThreshold(
                        value_threshold=tfma.GenericValueThreshold(
                            lower_bound={'value': accuracy_threshold}),
                        change_threshold=tfma.GenericChangeThreshold(
                            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                            absolute={'value': -1e-10})))
            ])
        ])


def create_pipeline(pipeline_root: str, data_root: str, serving_dir: str, metadata_path: str,
                    module_file: Optional[str] = None, qat_epochs: int = 10,
                    eval_config: Optional[tfma.EvalConfig] = None, enable_cache: bool = True,
                    beam_pipeline_args: Optional[List[str]] = None) -> tfx.dsl.Pipeline:
    """``eval_config``: the gate (default: TFX's penguin example's, ``penguin_eval_config``)."""
    module_file = module_file or penguin_module_file()
    # --- TFX's penguin example, as it ships --------------------------------------------------
    example_gen = tfx.components.CsvExampleGen(input_base=data_root)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"],
                                          infer_feature_shape=True)
    transform = tfx.components.Transform(examples=example_gen.outputs["examples"],
                                         schema=schema_gen.outputs["schema"],
                                         module_file=module_file)
    trainer = tfx.components.Trainer(
        module_file=module_file,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=100),
        eval_args=tfx.proto.EvalArgs(num_steps=5))
    # --- tfx-qat: the lines a user adds -----------------------------------------------------
    data = FeatureSpec(label_key="species")  # the label, once for all three components
    chain = qat_chain(
        examples=example_gen.outputs["examples"], trainer_model=trainer.outputs["model"],
        serving_dir=serving_dir,
        qat=QuantizationConfig(data=data, model_fn="_make_keras_model",
                               hparams_fn="_get_hyperparameters", epochs=qat_epochs,
                               batch_size=20, learning_rate=1e-3),
        export=ExportConfig(data=data, parity_examples=100),
        eval_config=eval_config or penguin_eval_config(),  # float = baseline, int8 = candidate
        schema=schema_gen.outputs["schema"], statistics=statistics_gen.outputs["statistics"],
        transform_graph=transform.outputs["transform_graph"], module_file=module_file)
    return tfx.dsl.Pipeline(
        pipeline_name="penguin-qat", pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, transform, trainer,
                    *chain.components],
        enable_cache=enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path),
        beam_pipeline_args=beam_pipeline_args or [])
