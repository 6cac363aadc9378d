"""Typed, validated, JSON-round-trippable configs: one per component.

Each config travels as a single TFX exec property (a JSON string). Validation happens in
``__post_init__`` so a bad value fails when the pipeline is *defined*, with a message that says
how to fix the call, not deep inside an executor. One module per concern (``base``, ``data``,
``trainer``, ``exporter``, ``evaluator``); users import the configs from here.
"""
from tfx_qat.quant_lib.config.base import TASKS, ConfigError, JsonConfig
from tfx_qat.quant_lib.config.data import (IMAGE_DTYPES, DataSpec, FeatureSpec, InputSpec,
                                           input_spec_from_dict, input_spec_from_json)
from tfx_qat.quant_lib.config.evaluator import EVAL_METRICS, EvalConfig, Threshold
from tfx_qat.quant_lib.config.exporter import IO_TYPES, ExportConfig
from tfx_qat.quant_lib.config.trainer import (DISTRIBUTIONS, MOVES, SCHEMES, TARGETS,
                                              QuantizationConfig, SearchConfig)

__all__ = ["TASKS", "ConfigError", "JsonConfig", "IMAGE_DTYPES", "DataSpec", "FeatureSpec",
           "InputSpec", "input_spec_from_dict", "input_spec_from_json", "EVAL_METRICS",
           "EvalConfig", "Threshold", "IO_TYPES", "ExportConfig", "DISTRIBUTIONS", "MOVES",
           "SCHEMES", "TARGETS", "QuantizationConfig", "SearchConfig"]
