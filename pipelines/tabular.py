"""Binary and regression pipelines on scikit-learn's bundled tabular sets (no network):
breast cancer (569 tumours, 30 features, malignant vs benign: binary) and diabetes (442 patients,
10 features, disease progression after a year: regression).

ImportExampleGen -> StatisticsGen -> SchemaGen -> Trainer (``modules/tabular_trainer.py``: one
Input per feature, the task's head and loss) -> QuantizeTrainer -> IntegerExporter ->
QuantEvaluator (gated by a ``tfma.EvalConfig``: AUC or MAE change thresholds, float = baseline)
-> VerifiedPusher.
"""
from __future__ import annotations

import os
import re
from typing import List, Optional

import numpy as np

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import text_format
from tfx import v1 as tfx

from tfx_qat.components import qat_chain
from tfx_qat.quant_lib.config import (ExportConfig, FeatureSpec, QuantizationConfig,
                               SearchConfig)

MODULE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "modules",
                           "tabular_trainer.py")
DATASETS = {"breast_cancer": ("binary", "malignant"), "diabetes": ("regression", "progression")}

# The gates a team would write in their Evaluator: the int8 model may lose at most 0.02 AUC, or
# add at most 10 % to the float model's MAE; float is the baseline, int8 the candidate.
DEFAULT_GATES = {
    "binary": """
metrics_specs {
  metrics { class_name: "AUC"
    threshold { change_threshold { direction: HIGHER_IS_BETTER absolute { value: -0.02 } } } }
  metrics { class_name: "BinaryAccuracy" }
  metrics { class_name: "ExampleCount" }
}
slicing_specs {}
""",
    "regression": """
metrics_specs {
  metrics { class_name: "MeanAbsoluteError"
    threshold { change_threshold { direction: LOWER_IS_BETTER relative { value: 0.1 } } } }
  metrics { class_name: "MeanSquaredError" }
  metrics { class_name: "ExampleCount" }
}
slicing_specs {}
""",
}


def default_gate(task: str) -> tfma.EvalConfig:
    return text_format.Parse(DEFAULT_GATES[task], tfma.EvalConfig())


def _feature_name(name: str) -> str:
    return re.sub(r"\W+", "_", name.strip()).strip("_")


def load(name: str, eval_fraction: float = 0.25, seed: int = 0):
    """(feature names, x_train, y_train, x_eval, y_eval, label key, task) of a bundled set;
    binary splits are stratified."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    if name not in DATASETS:
        raise ValueError(f"unknown tabular dataset {name!r}: one of {sorted(DATASETS)}")
    task, label_key = DATASETS[name]
    bunch = datasets.load_breast_cancer() if name == "breast_cancer" else datasets.load_diabetes()
    y = bunch.target
    if name == "breast_cancer":
        y = 1 - y  # sklearn: 0 = malignant; the positive class here is malignant
    xt, xe, yt, ye = train_test_split(bunch.data, y, test_size=eval_fraction, random_state=seed,
                                      stratify=y if task == "binary" else None)
    names = [_feature_name(f) for f in bunch.feature_names]
    return names, xt, yt, xe, ye, label_key, task


def _write(path: str, names: List[str], x: np.ndarray, y: np.ndarray, label_key: str,
           task: str) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as w:
        for row, label in zip(x, y):
            ex = tf.train.Example()
            for f, v in zip(names, row):
                ex.features.feature[f].float_list.value.append(float(v))
            if task == "binary":
                ex.features.feature[label_key].int64_list.value.append(int(label))
            else:
                ex.features.feature[label_key].float_list.value.append(float(label))
            w.write(ex.SerializeToString())


def ingest(name: str, out_dir: str, validation_fraction: float = 0.0):
    """Writes <out_dir>/{train,eval}/data.tfrecord (and a ``validation`` split, the last
    ``validation_fraction`` of the training rows, for a search); returns (label key, task)."""
    names, xt, yt, xe, ye, label_key, task = load(name)
    n = int(round(len(yt) * validation_fraction))
    if n:
        _write(os.path.join(out_dir, "validation", "data.tfrecord"), names, xt[-n:], yt[-n:],
               label_key, task)
        xt, yt = xt[:-n], yt[:-n]
    _write(os.path.join(out_dir, "train", "data.tfrecord"), names, xt, yt, label_key, task)
    _write(os.path.join(out_dir, "eval", "data.tfrecord"), names, xe, ye, label_key, task)
    return label_key, task


def create_pipeline(name: str, pipeline_root: str, data_root: str, serving_dir: str,
                    metadata_path: str, label_key: str, task: str, spec_task: Optional[str] = None,
                    eval_config: Optional[tfma.EvalConfig] = None, float_epochs: int = 30,
                    qat_epochs: int = 20, enable_cache: bool = True,
                    beam_pipeline_args: Optional[List[str]] = None,
                    search: Optional[SearchConfig] = None) -> tfx.dsl.Pipeline:
    """``task``: the head the Trainer module builds; ``spec_task``: FeatureSpec.task (None:
    QuantizeTrainer reads it from the loss the module compiled); ``eval_config``: the gate
    (default: DEFAULT_GATES[task]); ``search``: an accuracy-aware search on the ``validation``
    split (``ingest(..., validation_fraction)`` writes it)."""
    splits = ["train", "eval"] + (["validation"] if search else [])
    example_gen = tfx.components.ImportExampleGen(
        input_base=data_root,
        input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name=split, pattern=f"{split}/*") for split in splits]))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"],
                                          infer_feature_shape=True)
    trainer = tfx.components.Trainer(
        module_file=MODULE_FILE, examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config={"label_key": label_key, "task": task, "epochs": float_epochs})
    data = FeatureSpec(label_key=label_key, task=spec_task)
    chain = qat_chain(
        examples=example_gen.outputs["examples"], trainer_model=trainer.outputs["model"],
        serving_dir=serving_dir,
        qat=QuantizationConfig(data=data, epochs=qat_epochs, batch_size=32, learning_rate=1e-3,
                               search=search),
        export=ExportConfig(data=data, representative_examples=128, parity_examples=100),
        eval_config=eval_config or default_gate(task), schema=schema_gen.outputs["schema"],
        statistics=statistics_gen.outputs["statistics"])
    return tfx.dsl.Pipeline(
        pipeline_name=name, pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, trainer, *chain.components],
        enable_cache=enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path),
        beam_pipeline_args=beam_pipeline_args or [])
