"""QuantizeTrainer: quantization-aware fine-tuning of a float Keras model (TFMOT)."""
from typing import Any, Dict, Optional

from tfx import types
from tfx.components.util import udf_utils
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import trainer_pb2
from tfx.types import channel_utils, standard_artifacts, standard_component_specs as tss
from tfx.utils import json_utils

from tfx_qat.components.quantize_trainer.executor import Executor
from tfx_qat.components.quantize_trainer.spec import QuantizeTrainerSpec
from tfx_qat.components.utils import typed_config
from tfx_qat.quant_lib.config import QuantizationConfig


class QuantizeTrainer(base_component.BaseComponent):
    """QAT inside the Trainer step.

    With ``base_model`` (the stock Trainer's float model: a Keras SavedModel, or a
    ``tf.saved_model.save`` one that ``QuantizationConfig.model_fn`` of ``module_file`` rebuilds and
    the executor proves against it) it warm-starts from it. Features come as the Trainer's module
    reads them (``FeatureSpec``: ``transform_graph`` / ``schema``, inputs matched by name) or from
    one image feature (``DataSpec``). Without one,
    it first runs your Trainer module's ``run_fn`` exactly as the stock Trainer would (same
    ``module_file``/``run_fn``, ``custom_config``, ``train_args``/``eval_args``, schema,
    transform graph, hyperparameters), then applies QAT to the model it saved. Either way the layers
    the scheme supports are quantized, the rest stay float (or fail, in strict mode), and the
    per-layer report is stored with the output ``qat_model`` (Keras SavedModel at Format-Serving).

    With ``QuantizationConfig.search`` it measures each weight layer's sensitivity and tries
    candidates (mixed 4/8-bit weights, per-channel, more epochs, float fallback on a CPU target)
    on the search's own validation split until one is within budget; ``qat_model`` is that
    candidate, with ``search_status``, ``search_reason``, ``search_trial_table`` and
    ``sensitivity_ranking`` properties (the full record in ``qat_report.json``). IntegerExporter
    refuses a model whose search found no candidate within budget.
    """

    SPEC_CLASS = QuantizeTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel,
                 base_model: Optional[types.BaseChannel] = None,
                 config: Optional[QuantizationConfig] = None,
                 schema: Optional[types.BaseChannel] = None,
                 transform_graph: Optional[types.BaseChannel] = None,
                 hyperparameters: Optional[types.BaseChannel] = None,
                 statistics: Optional[types.BaseChannel] = None,
                 module_file: Optional[str] = None, run_fn: Optional[str] = None,
                 custom_config: Optional[Dict[str, Any]] = None,
                 train_args: Optional[trainer_pb2.TrainArgs] = None,
                 eval_args: Optional[trainer_pb2.EvalArgs] = None):
        config = typed_config(config, QuantizationConfig, "QuantizeTrainer")
        if module_file and run_fn:
            raise ValueError("QuantizeTrainer: pass module_file= or run_fn=, not both (as Trainer)")
        if base_model is None and not (module_file or run_fn):
            raise ValueError(
                "QuantizeTrainer needs a float model: pass base_model=trainer.outputs['model'] "
                "(warm start), or module_file=/run_fn= (your Trainer module) to train the float "
                "model first")
        spec = QuantizeTrainerSpec(
            examples=examples, base_model=base_model, schema=schema,
            transform_graph=transform_graph, hyperparameters=hyperparameters,
            statistics=statistics, config=config.to_json(), module_file=module_file, run_fn=run_fn,
            custom_config=json_utils.dumps(custom_config) if custom_config else None,
            train_args=train_args or trainer_pb2.TrainArgs(),
            eval_args=eval_args or trainer_pb2.EvalArgs(),
            qat_model=channel_utils.as_channel([standard_artifacts.Model()]))
        super().__init__(spec=spec)
        if module_file and udf_utils.should_package_user_modules():
            udf_utils.add_user_module_dependency(self, tss.MODULE_FILE_KEY, tss.MODULE_PATH_KEY)
