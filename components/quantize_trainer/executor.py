"""QuantizeTrainer executor: decode config -> quant_lib QAT -> write Model + report + properties."""
import dataclasses
import json
import logging
import os
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts, standard_component_specs as tss
from tfx.utils import path_utils

from components import keys
from components.utils import check_split, serving_model_dir, single, split_uri
from quant_lib import qat
from quant_lib.config import QuantizationConfig
from quant_lib.data import make_dataset


FLOAT_STAGE_DIR = "float_model"  # float model trained here when there is no base_model


def _train_float_with_user_module(input_dict, exec_properties, out_uri: str) -> str:
    """Runs the user's Trainer ``run_fn`` exactly as TFX's GenericExecutor would; returns the
    directory of the float serving model it saved."""
    from tfx.components.trainer.executor import GenericExecutor
    from tfx.components.util import udf_utils
    model = standard_artifacts.Model()
    model.uri = os.path.join(out_uri, FLOAT_STAGE_DIR)
    model_run = standard_artifacts.ModelRun()
    model_run.uri = os.path.join(out_uri, FLOAT_STAGE_DIR + "_run")
    fn_args = GenericExecutor()._GetFnArgs(  # pylint: disable=protected-access
        input_dict, {tss.MODEL_KEY: [model], tss.MODEL_RUN_KEY: [model_run]}, exec_properties)
    run_fn = udf_utils.get_fn(exec_properties, tss.RUN_FN_KEY)
    logging.info("QuantizeTrainer: no base_model; training the float model with the Trainer "
                 "module's run_fn into %s", fn_args.serving_model_dir)
    run_fn(fn_args)
    if not fileio.exists(fn_args.serving_model_dir):
        raise ValueError(f"the Trainer module's run_fn did not save a model to "
                         f"fn_args.serving_model_dir ({fn_args.serving_model_dir})")
    return fn_args.serving_model_dir


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        cfg = QuantizationConfig.from_json(exec_properties[keys.CONFIG])
        out = single(output_dict, keys.QAT_MODEL)
        if input_dict.get(keys.BASE_MODEL):
            base_uri = single(input_dict, keys.BASE_MODEL).uri
            float_dir = serving_model_dir(single(input_dict, keys.BASE_MODEL))
        else:
            float_dir = _train_float_with_user_module(input_dict, exec_properties, out.uri)
            base_uri = os.path.dirname(float_dir)
        train_uri = split_uri(input_dict[keys.EXAMPLES], cfg.train_split)
        n = check_split(input_dict[keys.EXAMPLES], cfg.train_split, cfg.data,
                        "QuantizationConfig.train_split")
        logging.info("QuantizeTrainer: %d training examples checked (parse, NaN/Inf, labels)", n)

        logging.info("QuantizeTrainer: QAT (%s scheme%s, %s) for %d epoch(s) at lr=%g on %s",
                     cfg.scheme, ", per-tensor" if cfg.per_tensor else "", cfg.distribution,
                     cfg.epochs, cfg.learning_rate, train_uri)
        qat_model, decisions, stats = qat.run_qat(
            lambda: qat.load_model(float_dir),
            lambda: make_dataset(train_uri, cfg.data, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                 repeat=cfg.steps_per_epoch is not None), cfg)

        out_dir = path_utils.serving_model_dir(out.uri)
        qat.save_model(qat_model, out_dir)
        counts = {d: sum(1 for x in decisions if x.decision == d)
                  for d in (qat.QUANTIZE, qat.FOLD, qat.FLOAT)}
        report = {"config": cfg.to_dict(), "base_model": base_uri, "training": stats,
                  "counts": counts, "layers": [dataclasses.asdict(d) for d in decisions]}
        with fileio.open(os.path.join(out.uri, keys.QAT_REPORT_FILE), "w") as f:
            f.write(json.dumps(report, indent=2))
        out.set_float_custom_property(keys.P_QAT_SECONDS_PER_STEP, stats["seconds_per_step"])
        out.set_float_custom_property(keys.P_QAT_TRAIN_ACCURACY, stats["final_train_accuracy"])
        out.set_int_custom_property(keys.P_QUANTIZED_LAYERS, counts[qat.QUANTIZE])
        out.set_int_custom_property(keys.P_FOLDED_LAYERS, counts[qat.FOLD])
        out.set_string_custom_property(keys.P_QAT_SCHEME, cfg.scheme)
        out.set_int_custom_property(keys.P_PER_TENSOR, int(cfg.per_tensor))
        out.set_int_custom_property(keys.P_FLOAT_LAYERS, counts[qat.FLOAT])
        out.set_string_custom_property(keys.P_FLOAT_LAYER_NAMES, json.dumps(
            [d.name for d in decisions if d.decision == qat.FLOAT]))
        logging.info("QuantizeTrainer: QAT model written to %s (%d quantized, %d folded, %d float "
                     "layers; report %s)", out_dir, counts[qat.QUANTIZE], counts[qat.FOLD],
                     counts[qat.FLOAT], os.path.join(out.uri, keys.QAT_REPORT_FILE))
