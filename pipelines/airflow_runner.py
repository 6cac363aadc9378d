"""Airflow 2: any tfx-qat pipeline as an Airflow DAG (TFX's AirflowDagRunner).

A team's DAG file names its pipeline one of two ways (``pipelines/airflow_dags/tfx_qat_dag.py``
reads them from the environment; a DAG file of its own can call these functions directly):

- ``dag_from_factory("my_team.pipeline:create_pipeline")``: their own pipeline definition, a
  function returning a ``tfx.dsl.Pipeline`` (their Transform, module file, gate, push target);
- ``dag_from_command_line(["run", "--csv", ..., "--eval-config", "gate.pbtxt"])``: anything
  ``python -m tfx_qat.pipelines.cli`` runs locally (``run``/``penguin``/``tabular``/``wide-deep``/``taxi``
  with every flag, the gate and an EvalConfig file included), scheduled by Airflow instead.

Airflow's own pins (werkzeug < 3, SQLAlchemy 1.4, ...) conflict with TFX 1.16's, so it lives in a
second venv layered over the main one (``make airflow-venv``; see README "Airflow").
"""
from __future__ import annotations

import datetime
import importlib
from typing import Any, Dict, Optional, Sequence

from tfx_qat.quant_lib.config import ConfigError

START_DATE = datetime.datetime(2026, 1, 1)


def dag_for(pipeline, dag_config: Optional[Dict[str, Any]] = None):
    """The Airflow DAG (dag_id = the pipeline's name) running ``pipeline``'s components as tasks.
    ``dag_config``: Airflow DAG arguments (default: no schedule, no catch-up)."""
    from tfx.orchestration.airflow.airflow_dag_runner import (AirflowDagRunner,
                                                              AirflowPipelineConfig)
    config = {"schedule": None, "start_date": START_DATE, "catchup": False}
    config.update(dag_config or {})
    return AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config=config)).run(pipeline)


def load_factory(target: str):
    """``"package.module:function"`` -> the function; ConfigError naming what is missing."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"pipeline factory {target!r}: write it as package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"pipeline factory {target!r}: cannot import {module_name} ({e}); put "
                          "its package on the Airflow workers' PYTHONPATH") from e
    if not callable(getattr(module, attr, None)):
        raise ConfigError(f"pipeline factory {target!r}: {module_name} has no function {attr}")
    return getattr(module, attr)


def dag_from_factory(target: str, dag_config: Optional[Dict[str, Any]] = None, **kwargs):
    """The DAG of the pipeline ``target`` (``module:function``) returns, called with ``kwargs``."""
    from tfx.orchestration import pipeline as tfx_pipeline
    pipeline = load_factory(target)(**kwargs)
    if not isinstance(pipeline, tfx_pipeline.Pipeline):
        raise ConfigError(f"pipeline factory {target!r} returned {type(pipeline).__name__}, "
                          "not a tfx.dsl.Pipeline")
    return dag_for(pipeline, dag_config)


def dag_from_command_line(argv: Sequence[str], dag_config: Optional[Dict[str, Any]] = None):
    """The DAG of the pipeline a ``tfx_qat.pipelines.cli`` command line defines (data laid once under
    its output root: DAG files are parsed again and again)."""
    from tfx_qat.pipelines import cli
    return dag_for(cli.build_pipeline(list(argv), reuse_data=True).pipeline, dag_config)
