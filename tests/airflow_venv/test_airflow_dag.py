"""Airflow 2: the DAG loads in a DagBag without import errors, and `airflow dags test` runs it to
completion on digits with a throw-away SQLite Airflow. Runs in .venv-airflow (`make test-airflow`)."""
import json
import os
import subprocess
import sys

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAGS = os.path.join(REPO, "pipelines", "airflow_dags")
DAG_ID = "tfx-qat-digits-airflow"
NODES = {"ImportExampleGen", "StatisticsGen", "SchemaGen", "Trainer", "QuantizeTrainer",
         "IntegerExporter", "QuantEvaluator", "Pusher"}
AIRFLOW = os.path.join(os.path.dirname(sys.executable), "airflow")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    root = tmp_path_factory.mktemp("airflow_run")
    e = dict(os.environ, AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=DAGS,
             AIRFLOW__CORE__LOAD_EXAMPLES="False",
             AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
             TFX_QAT_DATASET="digits", TFX_QAT_ROOT=str(root), TFX_QAT_FLOAT_EPOCHS="10",
             TFX_QAT_QAT_EPOCHS="2", PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([AIRFLOW, "db", "migrate"], env=e, check=True, capture_output=True)
    return e, root


def test_dag_loads_in_dagbag_without_import_errors(env):
    e, _ = env
    code = ("import json; from airflow.models import DagBag; "
            f"b = DagBag(dag_folder={DAGS!r}, include_examples=False); "
            "print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()}, "
            "'dags': {d: sorted(t.task_id for t in b.dags[d].tasks) for d in b.dags}}))")
    out = subprocess.run([sys.executable, "-c", code], env=e, check=True, capture_output=True,
                         text=True).stdout
    bag = json.loads(out.strip().splitlines()[-1])
    assert bag["errors"] == {}
    assert NODES <= set(bag["dags"][DAG_ID]), bag["dags"]


def test_dags_test_runs_the_pipeline_to_a_push(env):
    e, root = env
    r = subprocess.run([AIRFLOW, "dags", "test", DAG_ID, "2026-01-02"], env=e,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(
        os.path.join(root, "metadata.sqlite")))
    types = {t.id: t.name.rsplit(".", 1)[-1].replace("VerifiedPusher", "Pusher")
             for t in store.get_execution_types()}
    states = {types[x.type_id]: x.last_known_state for x in store.get_executions()}
    assert NODES <= set(states), states
    assert all(states[n] == metadata_store_pb2.Execution.COMPLETE for n in NODES), states
    blessing = store.get_artifacts_by_type("ModelBlessing")[-1]
    pushed = store.get_artifacts_by_type("PushedModel")[-1]
    blessed = blessing.custom_properties["blessed"].int_value
    assert pushed.custom_properties["pushed"].int_value == blessed
    if blessed:
        dest = pushed.custom_properties["pushed_destination"].string_value
        assert os.path.getsize(os.path.join(dest, "tflite")) > 0
