"""Airflow 2 DAG for a tfx-qat pipeline, configured from the environment so that one file serves
every deployment (point Airflow's ``dags_folder`` here, or copy this file). The DAG's id is the
pipeline's name; a bad setting fails the DAG import with a message naming it.

- ``TFX_QAT_PIPELINE=package.module:function``: your own pipeline definition (a function returning
  a ``tfx.dsl.Pipeline``); ``TFX_QAT_PIPELINE_KWARGS``: a JSON object of its keyword arguments.
- else ``TFX_QAT_ARGS``: a ``python -m tfx_qat.pipelines.cli`` command line that defines a pipeline, every
  flag included (``run --csv train.csv --max-accuracy-drop-pt 1 --eval-config gate.pbtxt
  --output-root /shared/tfx-qat``; ``taxi``/``penguin``/``tabular``/``wide-deep`` as well). Default:
  ``run --dataset fashion_mnist --output-root runs/airflow_fashion_mnist`` under the repository.
- ``TFX_QAT_SCHEDULE``: the DAG's schedule (cron or preset such as ``@daily``; default none).
"""
import json
import os
import shlex

from tfx_qat.pipelines.airflow_runner import dag_from_command_line, dag_from_factory

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_ARGS = ["run", "--dataset", "fashion_mnist", "--output-root",
                os.path.join(REPO, "runs", "airflow_fashion_mnist")]

_config = {"schedule": os.environ.get("TFX_QAT_SCHEDULE") or None}
if os.environ.get("TFX_QAT_PIPELINE"):
    DAG = dag_from_factory(os.environ["TFX_QAT_PIPELINE"], _config,
                           **json.loads(os.environ.get("TFX_QAT_PIPELINE_KWARGS") or "{}"))
else:
    DAG = dag_from_command_line(shlex.split(os.environ.get("TFX_QAT_ARGS", "")) or DEFAULT_ARGS,
                                _config)
