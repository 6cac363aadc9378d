"""The tfx-qat pipeline definition (one definition; runners live in runner.py).

ImportExampleGen -> StatisticsGen -> SchemaGen -> Trainer (float, module file) -> QuantizeTrainer
-> IntegerExporter -> QuantEvaluator -> VerifiedPusher (``tfx_qat.components.qat_chain``; pushes the
int8 TFLite only when blessed, and only the bytes that were evaluated).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
# TFX's classes from their modules, not ``tfx.v1``: that import also loads the Google Cloud
# extensions (Vertex AI clients, ~2.4 s of every run's start-up) this pipeline never uses.
from tfx.components import ImportExampleGen, SchemaGen, StatisticsGen, Trainer
from tfx.orchestration import metadata
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import example_gen_pb2, trainer_pb2

from tfx_qat.components.chain import qat_chain
from tfx_qat.quant_lib.config import DataSpec, EvalConfig, ExportConfig, QuantizationConfig
from tfx_qat.quant_lib.evaluation import gate

MODULE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "modules", "cnn_trainer.py")
# Beam's own default (DirectRunner, in memory, one worker). Empty on purpose: with any Beam arg
# set, TFX repackages its whole install as an sdist for remote workers before each Beam component
# (~1.5 s each, three per run); a local run has no workers to ship it to.
DEFAULT_BEAM_ARGS: List[str] = []


@dataclasses.dataclass
class PipelineSettings:
    """Everything a run varies; the CLI fills it from flags."""

    name: str
    output_root: str
    data_root: str
    data: DataSpec
    float_epochs: int = 5
    float_batch_size: int = 64
    float_learning_rate: float = 1e-3
    width: int = 32
    qat: Optional[QuantizationConfig] = None
    export: Optional[ExportConfig] = None
    eval: Optional[EvalConfig] = None
    beam_pipeline_args: List[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_BEAM_ARGS))
    enable_cache: bool = True
    seed: int = 0
    eval_config_json: Optional[str] = None  # a tfma.EvalConfig deciding the blessing (JSON)

    def __post_init__(self):
        self.qat = self.qat or QuantizationConfig(data=self.data, seed=self.seed)
        self.export = self.export or ExportConfig(data=self.data)
        self.eval = self.eval or EvalConfig(data=self.data)
        for name, c in (("qat", self.qat), ("export", self.export), ("eval", self.eval)):
            if c.data != self.data:
                raise ValueError(f"PipelineSettings.{name}.data differs from PipelineSettings.data; "
                                 "build the component configs with the same DataSpec")
        if self.qat.search and self.qat.search.validation_split == self.eval.eval_split:
            raise ValueError(
                f"SearchConfig.validation_split={self.qat.search.validation_split!r} is "
                "EvalConfig.eval_split: the search would select on the gate's own examples; give "
                "it a split of its own (the CLI's --search-budget-pt writes 'validation')")

    @property
    def splits(self) -> List[str]:
        """The splits ImportExampleGen reads (``<data_root>/<split>/*``)."""
        return ["train", "eval"] + ([self.qat.search.validation_split] if self.qat.search else [])

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_root, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_root, "metadata.sqlite")

    @property
    def serving_dir(self) -> str:
        return os.path.join(self.output_root, "serving")

    @property
    def trainer_custom_config(self) -> Dict:
        return {"data": self.data.to_dict(), "epochs": self.float_epochs,
                "batch_size": self.float_batch_size, "learning_rate": self.float_learning_rate,
                "width": self.width, "seed": self.seed}


TRAINER_RUN_FN = "tfx_qat.pipelines.modules.cnn_trainer.run_fn"


def create_pipeline(s: PipelineSettings, metadata_connection_config=None,
                    for_container: bool = False) -> Pipeline:
    """The one pipeline definition every runner uses.

    ``for_container``: steps run in an image with tfx-qat installed (Kubeflow V2 / Vertex), so the
    Trainer imports its ``run_fn`` from the installed package instead of packaging the local module
    file, and MLMD is the orchestrator's (no SQLite connection config).
    """
    example_gen = ImportExampleGen(
        input_base=s.data_root,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name=split, pattern=f"{split}/*") for split in s.splits]))
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    trainer_code = {"run_fn": TRAINER_RUN_FN} if for_container else {"module_file": MODULE_FILE}
    trainer = Trainer(
        **trainer_code,
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        train_args=trainer_pb2.TrainArgs(splits=["train"]),
        eval_args=trainer_pb2.EvalArgs(splits=["eval"]),
        custom_config=s.trainer_custom_config)
    chain = qat_chain(
        examples=example_gen.outputs["examples"], trainer_model=trainer.outputs["model"],
        serving_dir=s.serving_dir, qat=s.qat, export=s.export, evaluation=s.eval,
        eval_config=gate.parse_eval_config(s.eval_config_json) if s.eval_config_json else None,
        schema=schema_gen.outputs["schema"], statistics=statistics_gen.outputs["statistics"])
    chain.pusher.with_id("Pusher")
    return Pipeline(
        pipeline_name=s.name,
        pipeline_root=s.pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, trainer, *chain.components],
        enable_cache=s.enable_cache,
        metadata_connection_config=None if for_container else (
            metadata_connection_config or
            metadata.sqlite_metadata_connection_config(s.metadata_path)),
        beam_pipeline_args=s.beam_pipeline_args)
