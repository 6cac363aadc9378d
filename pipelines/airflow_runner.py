"""Airflow 2: the same pipeline definition as the local run, as an Airflow DAG (AirflowDagRunner).

Airflow's own pins (werkzeug < 3, SQLAlchemy 1.4, ...) conflict with TFX 1.16's, so it lives in a
second venv layered over the main one (``make airflow-venv``; see README "Airflow").
"""
from __future__ import annotations

import datetime
import os
from typing import List, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_dag(dataset: str = "fashion_mnist", output_root: Optional[str] = None,
              float_epochs: int = 5, qat_epochs: int = 1,
              beam_args: Optional[List[str]] = None,
              start_date: datetime.datetime = datetime.datetime(2026, 1, 1)):
    """Ingests the dataset if missing and returns the Airflow DAG (dag_id ``tfx-qat-<dataset>``)."""
    from tfx.orchestration.airflow.airflow_dag_runner import (AirflowDagRunner,
                                                              AirflowPipelineConfig)

    from pipelines import data
    from pipelines.pipeline import DEFAULT_BEAM_ARGS, PipelineSettings, create_pipeline
    from quant_lib.config import QuantizationConfig

    if dataset not in data.BUILTIN_SPECS:
        raise ValueError(f"TFX_QAT_DATASET={dataset!r}: use one of {sorted(data.BUILTIN_SPECS)}")
    root = os.path.abspath(output_root or os.path.join(REPO_ROOT, "runs", f"airflow_{dataset}"))
    data_root = os.path.join(root, "data")
    spec = data.ingested_spec(data_root)  # DAG files are parsed often: ingest once
    if spec is None:
        ingest = data.ingest_digits if dataset == "digits" else data.ingest_fashion_mnist
        spec = ingest(data_root)
    settings = PipelineSettings(
        name=f"tfx-qat-{dataset.replace('_', '-')}-airflow", output_root=root,
        data_root=data_root, data=spec, float_epochs=float_epochs,
        qat=QuantizationConfig(data=spec, epochs=qat_epochs),
        beam_pipeline_args=beam_args or list(DEFAULT_BEAM_ARGS))
    config = AirflowPipelineConfig(airflow_dag_config={
        "schedule": None, "start_date": start_date, "catchup": False})
    return AirflowDagRunner(config).run(create_pipeline(settings))
