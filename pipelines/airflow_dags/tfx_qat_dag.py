"""Airflow 2 DAG for the tfx-qat pipeline (same definition as ``make run``; TFX's AirflowDagRunner).

Point Airflow's ``dags_folder`` at this directory (``make airflow-test`` does, on a local SQLite
Airflow). Settings come from the environment so one file serves every deployment:

- ``TFX_QAT_DATASET``: ``fashion_mnist`` (default) or ``digits``; ingested once into
  ``<root>/data`` if missing (IDX from the Debian package, or sklearn's bundled digits).
- ``TFX_QAT_ROOT``: output root (pipeline root, SQLite MLMD, pushes); default ``runs/airflow_<dataset>``.
- ``TFX_QAT_FLOAT_EPOCHS`` / ``TFX_QAT_QAT_EPOCHS``: training length.
- ``TFX_QAT_BEAM_ARGS``: space-separated Beam args (default: DirectRunner in memory).
"""
import datetime
import os

from pipelines.airflow_runner import build_dag

DAG = build_dag(
    dataset=os.environ.get("TFX_QAT_DATASET", "fashion_mnist"),
    output_root=os.environ.get("TFX_QAT_ROOT"),
    float_epochs=int(os.environ.get("TFX_QAT_FLOAT_EPOCHS", "5")),
    qat_epochs=int(os.environ.get("TFX_QAT_QAT_EPOCHS", "1")),
    beam_args=os.environ.get("TFX_QAT_BEAM_ARGS", "").split() or None,
    start_date=datetime.datetime(2026, 1, 1),
)
