"""QuantizeTrainer executor: decode config -> quant_lib QAT -> write Model + report + properties."""
import dataclasses
import json
import logging
import os
import re
from typing import Any, Dict, List

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts, standard_component_specs as tss
from tfx.utils import path_utils

from tfx_qat.components import inputs, keys
from tfx_qat.components.utils import (data_errors_name, serving_model_dir, set_properties, single,
                                      split_statistics)
from tfx_qat.quant_lib.config import QuantizationConfig
from tfx_qat.quant_lib.examples.data import DataError
from tfx_qat.quant_lib.qat import models, saving, train as qat_train
from tfx_qat.quant_lib.search import search, sensitivity


FLOAT_STAGE_DIR = "float_model"  # float model trained here when there is no base_model


def _train_float_with_user_module(input_dict, exec_properties, out_uri: str) -> str:
    """Runs the user's Trainer ``run_fn`` exactly as TFX's GenericExecutor would; returns the
    directory of the float serving model it saved."""
    from tfx.components.util import udf_utils

    from tfx_qat.components import tfx_internals
    model = standard_artifacts.Model()
    model.uri = os.path.join(out_uri, FLOAT_STAGE_DIR)
    model_run = standard_artifacts.ModelRun()
    model_run.uri = os.path.join(out_uri, FLOAT_STAGE_DIR + "_run")
    fn_args = tfx_internals.trainer_fn_args(
        input_dict, {tss.MODEL_KEY: [model], tss.MODEL_RUN_KEY: [model_run]}, exec_properties)
    run_fn = udf_utils.get_fn(exec_properties, tss.RUN_FN_KEY)
    logging.info("QuantizeTrainer: no base_model; training the float model with the Trainer "
                 "module's run_fn into %s", fn_args.serving_model_dir)
    run_fn(fn_args)
    if not fileio.exists(fn_args.serving_model_dir):
        raise ValueError(f"the Trainer module's run_fn did not save a model to "
                         f"fn_args.serving_model_dir ({fn_args.serving_model_dir})")
    return fn_args.serving_model_dir


def _check_all_examples_seen(stats: Dict[str, Any], examples: int, cfg: QuantizationConfig,
                             statistics_path: str) -> None:
    """With statistics, the split was not streamed up front; the training pass itself shows a
    file cut short since StatisticsGen ran (TensorFlow's reader takes a cut as end of file)."""
    if not statistics_path or cfg.steps_per_epoch is not None or cfg.distribution != "none":
        return
    expected = -(-examples // cfg.batch_size)
    if stats.get("first_epoch_steps", expected) < expected:
        raise DataError(
            f"QAT read {stats['first_epoch_steps']} batches of {cfg.batch_size} in its first epoch "
            f"but StatisticsGen counted {examples} examples ({expected} batches; "
            f"{statistics_path}): the split's files changed or were cut short after StatisticsGen "
            "ran — regenerate the data (rerun ExampleGen and StatisticsGen)")


def _validation_uri(wired: inputs.StepInputs, cfg: QuantizationConfig):
    """The search's validation split, checked before any training."""
    if cfg.search is None:
        return None
    try:
        return wired.split_uri(cfg.search.validation_split)
    except ValueError as e:
        raise ValueError(f"SearchConfig.validation_split={cfg.search.validation_split!r}: {e}. "
                         "The search compares trials on a split that neither QAT nor the "
                         "QuantEvaluator uses (e.g. ExampleGen output_config with train/"
                         "validation/eval)") from e


# TensorFlow errors of the input pipeline (parsing a record, decoding or reshaping its values).
_RECORD_ERRORS = re.compile(r"serialized Example|DecodeRaw|Input to reshape is a tensor")


def _qat(cfg, float_model, float_dir, build_fn, train_uri, val_uri):
    """QAT as configured, or the accuracy-aware search over such runs. Returns (qat_model,
    decisions, training stats, the config of the model kept, SearchResult or None)."""
    try:
        return _qat_or_search(cfg, float_model, float_dir, build_fn, train_uri, val_uri)
    except tf.errors.DataLossError as e:  # a file cut or damaged after the up-front checks
        raise DataError(f"corrupt or truncated TFRecord in {train_uri}: "
                        f"{e.message.splitlines()[0]} — regenerate the data (rerun ExampleGen "
                        "and StatisticsGen)") from e
    except tf.errors.InvalidArgumentError as e:
        if not _RECORD_ERRORS.search(e.message):
            raise
        # Past the checked sample: e.g. raw image bytes of another length (their statistics
        # give only the mean length).
        raise DataError(f"a record in {train_uri} does not match "
                        f"{float_model.inputs.adapter.describe()}: {e.message.splitlines()[0]} — "
                        f"{float_model.inputs.adapter.hint()}") from e


def _qat_or_search(cfg, float_model, float_dir, build_fn, train_uri, val_uri):
    def train(c: QuantizationConfig, fresh: bool = False):
        load = (lambda: sensitivity.fresh_copy(float_model.model)) if fresh else (
            lambda: float_model.model if c.distribution == "none" else
            models.load_float_model(float_dir, build_fn))
        return qat_train.run_qat(load, lambda: float_model.inputs.dataset(
            train_uri, c.batch_size, shuffle=True, seed=c.seed,
            repeat=c.steps_per_epoch is not None), c, float_model.task)

    if val_uri is None:
        return (*train(cfg), cfg, None)
    bound = float_model.inputs
    with data_errors_name("SearchConfig.validation_split", cfg.search.validation_split):
        features, labels = bound.arrays(val_uri, cfg.search.validation_examples)
    representative, _ = bound.arrays(train_uri, 200)
    calibration = [x for x, _ in bound.dataset(train_uri, cfg.batch_size).take(4)]
    return search.run(float_model.model, cfg, lambda c: train(c, fresh=True), search.SearchData(
        features, labels, bound.keras_x(features), representative, calibration, float_model.task),
        progress=logging.info)


class Executor(base_executor.BaseExecutor):
    """QAT of the float model, warm-started from it.

    input_dict: ``examples`` (Examples: ``config.train_split``, and a validation split when
    configured), ``base_model`` (the Trainer's float Model; absent: trained here with the
    module's run_fn), optional ``schema``, ``statistics`` (data checks), ``transform_graph``,
    ``hyperparameters``.
    output_dict: ``qat_model`` (Model: the QAT SavedModel, its layer plan and records.QatModel).
    exec_properties: ``config`` (QuantizationConfig JSON); the Trainer's ``train_args``,
    ``eval_args``, ``module_file`` / ``module_path``, ``run_fn``, ``custom_config``.
    """

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        cfg = QuantizationConfig.from_json(exec_properties[keys.CONFIG])
        out = single(output_dict, keys.QAT_MODEL)
        wired = inputs.StepInputs.resolve(input_dict)
        train_uri = wired.split_uri(cfg.train_split)
        val_uri = _validation_uri(wired, cfg)
        adapter = inputs.adapter_factory(cfg.data, wired, train_uri)()
        build_fn = inputs.model_builder(exec_properties, cfg, wired.hyperparameters)
        if wired.base_model:
            base_uri = wired.base_model.uri
            float_dir = serving_model_dir(wired.base_model)
        else:
            float_dir = _train_float_with_user_module(input_dict, exec_properties, out.uri)
            base_uri = os.path.dirname(float_dir)
        # Before any training: the data against the model's inputs, the rebuilt model against
        # the Trainer's SavedModel, then the split: from StatisticsGen's statistics when wired
        # (count, missing, NaN/Inf, labels; plus the first records parsed), else one pass.
        statistics, stats_path = split_statistics(wired.statistics, cfg.train_split)
        with data_errors_name("QuantizationConfig.train_split", cfg.train_split):
            float_model = models.prepare_float_model(float_dir, build_fn, adapter, train_uri,
                                                     task=getattr(cfg.data, "task", None))
            n = float_model.inputs.check_split(train_uri, statistics, stats_path)
        float_props = float_model.to_properties()
        if float_model.source == "rebuilt":  # a Keras copy: the float TFLite reference needs one
            float_props = dataclasses.replace(
                float_props, float_keras_model=os.path.join(out.uri, keys.FLOAT_KERAS_DIR))
            saving.save_model(float_model.model, float_props.float_keras_model)
        logging.info("QuantizeTrainer: float model %s (%s); %d training examples checked against "
                     "its inputs %s (%s)", float_dir, float_model.source, n,
                     sorted(float_model.inputs.mapping),
                     f"StatisticsGen: {stats_path}" if statistics else "one pass over the split")

        logging.info("QuantizeTrainer: QAT (%s scheme%s, %s) for %d epoch(s) at lr=%g on %s; "
                     "%s task (from %s), loss %s", cfg.scheme,
                     ", per-tensor" if cfg.per_tensor else "", cfg.distribution, cfg.epochs,
                     cfg.learning_rate, train_uri, float_model.task.kind, float_model.task.source,
                     float_model.task.loss_name)
        with data_errors_name("QuantizationConfig.train_split", cfg.train_split):
            qat_model, decisions, stats, kept_cfg, searched = _qat(
                cfg, float_model, float_dir, build_fn, train_uri, val_uri)
            _check_all_examples_seen(stats, n, kept_cfg, stats_path)

        out_dir = path_utils.serving_model_dir(out.uri)
        saving.save_model(qat_model, out_dir, float_model.inputs)
        result = qat_train.QATResult(kept_cfg, base_uri, stats, decisions, float_props, searched)
        with fileio.open(os.path.join(out.uri, keys.QAT_REPORT_FILE), "w") as f:
            f.write(json.dumps(result.report(), indent=2))
        set_properties(out, result.to_properties())
        logging.info("QuantizeTrainer: QAT model written to %s (%s; report %s)", out_dir,
                     result.summary(), os.path.join(out.uri, keys.QAT_REPORT_FILE))
