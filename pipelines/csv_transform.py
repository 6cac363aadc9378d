"""The everyday TFX pipeline shape tfx-qat is added to, shared by the taxi and wide-and-deep
examples: CsvExampleGen -> StatisticsGen -> SchemaGen -> Transform -> Trainer with one module,
then tfx-qat's four components on the raw Examples and the Transform graph (the lines a user
adds: ``qat_steps``)."""
from __future__ import annotations

from typing import Dict, List, Optional

import tensorflow_model_analysis as tfma
from tfx.components import CsvExampleGen, SchemaGen, StatisticsGen, Trainer, Transform
from tfx.dsl.components.base.base_node import BaseNode
from tfx.orchestration import metadata, pipeline
from tfx.proto import trainer_pb2

from tfx_qat.components import qat_chain
from tfx_qat.quant_lib.config import ExportConfig, QuantizationConfig


def stock_steps(data_root: str, module_file: str, train_steps: int, eval_steps: int,
                infer_feature_shape: bool) -> Dict[str, BaseNode]:
    """The team's pipeline, as it is."""
    example_gen = CsvExampleGen(input_base=data_root)
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"],
                           infer_feature_shape=infer_feature_shape)
    transform = Transform(examples=example_gen.outputs["examples"],
                          schema=schema_gen.outputs["schema"], module_file=module_file)
    trainer = Trainer(module_file=module_file, examples=transform.outputs["transformed_examples"],
                      transform_graph=transform.outputs["transform_graph"],
                      schema=schema_gen.outputs["schema"],
                      train_args=trainer_pb2.TrainArgs(num_steps=train_steps),
                      eval_args=trainer_pb2.EvalArgs(num_steps=eval_steps))
    return {"example_gen": example_gen, "statistics_gen": statistics_gen,
            "schema_gen": schema_gen, "transform": transform, "trainer": trainer}


def qat_steps(stock: Dict[str, BaseNode], module_file: str, qat: QuantizationConfig,
              export: ExportConfig, gate: tfma.EvalConfig, serving_dir: str) -> List[BaseNode]:
    """tfx-qat's four components after the stock steps (``tfx_qat.components.qat_chain``)."""
    return qat_chain(
        examples=stock["example_gen"].outputs["examples"],
        trainer_model=stock["trainer"].outputs["model"], serving_dir=serving_dir, qat=qat,
        export=export, eval_config=gate, schema=stock["schema_gen"].outputs["schema"],
        statistics=stock["statistics_gen"].outputs["statistics"],
        transform_graph=stock["transform"].outputs["transform_graph"],
        module_file=module_file).components


def assemble(name: str, pipeline_root: str, metadata_path: str, nodes: List[BaseNode],
             enable_cache: bool, beam_pipeline_args: Optional[List[str]]) -> pipeline.Pipeline:
    return pipeline.Pipeline(
        pipeline_name=name, pipeline_root=pipeline_root, components=nodes,
        enable_cache=enable_cache,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(metadata_path),
        beam_pipeline_args=beam_pipeline_args or [])
