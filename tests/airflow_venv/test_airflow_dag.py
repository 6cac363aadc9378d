"""Airflow 2, as a platform team uses it: the one DAG file (pipelines/airflow_dags) names a team's
own pipeline factory (tests/airflow_venv/team_pipeline.py: TFX's penguin example with Transform, a
module file and the team's EvalConfig gate), and `airflow dags test` runs it to a verified push; or
a `tfx_qat.pipelines.cli` command line with the gate and an EvalConfig file, which reach QuantEvaluator;
a bad setting fails the DAG import naming it. Real Airflow on a throw-away SQLite database, in
.venv-airflow (`make test-airflow`)."""
import json
import os
import subprocess
import sys

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DAGS = os.path.join(REPO, "pipelines", "airflow_dags")
AIRFLOW = os.path.join(os.path.dirname(sys.executable), "airflow")
PENGUIN_NODES = {"CsvExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer",
                 "QuantizeTrainer", "IntegerExporter", "QuantEvaluator", "VerifiedPusher"}
DIGITS_NODES = {"ImportExampleGen", "StatisticsGen", "SchemaGen", "Trainer", "QuantizeTrainer",
                "IntegerExporter", "QuantEvaluator", "Pusher"}
GATE = """model_specs { label_key: "label" }
metrics_specs { metrics { class_name: "SparseCategoricalAccuracy"
  threshold { change_threshold { direction: HIGHER_IS_BETTER absolute { value: -0.015 } } } } }
slicing_specs {}
"""
# One process loads the DAG file once per configuration (the file reads the environment on import).
LOAD = """
import json, os, sys
from airflow.models import DagBag
out = []
for env in json.loads(sys.argv[1]):
    for k in ("TFX_QAT_PIPELINE", "TFX_QAT_PIPELINE_KWARGS", "TFX_QAT_ARGS"):
        os.environ.pop(k, None)
    os.environ.update(env)
    bag = DagBag(dag_folder=sys.argv[2], include_examples=False)
    dags = {}
    for dag_id, dag in bag.dags.items():
        tasks = {}
        for t in dag.tasks:
            c = t.python_callable.keywords["component"]
            tasks[t.task_id] = {k: v for k, v in c.exec_properties.items() if isinstance(v, str)}
        dags[dag_id] = tasks
    out.append({"errors": [str(v) for v in bag.import_errors.values()], "dags": dags})
print(json.dumps(out))
"""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    e = dict(os.environ, AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=DAGS,
             AIRFLOW__CORE__LOAD_EXAMPLES="False",
             AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
             PYTHONPATH=os.pathsep.join([REPO, HERE]), TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([AIRFLOW, "db", "migrate"], env=e, check=True, capture_output=True)
    return e


@pytest.fixture(scope="module")
def loaded(env, tmp_path_factory):
    """The DAG file loaded in a DagBag under four settings: team factory, CLI with its gate, and
    two bad ones."""
    tmp = tmp_path_factory.mktemp("dagbag")
    gate = tmp / "gate.pbtxt"
    gate.write_text(GATE)
    configs = [
        {"TFX_QAT_PIPELINE": "team_pipeline:create_pipeline",
         "TFX_QAT_PIPELINE_KWARGS": json.dumps({"root": str(tmp / "team")})},
        {"TFX_QAT_ARGS": f"run --dataset digits --output-root {tmp / 'cli'} --eval-config {gate}"
                         " --qat-epochs 3"},
        {"TFX_QAT_ARGS": f"run --dataset digits --output-root {tmp / 'bad'} "
                         "--max-accuracy-drop-pt -1"},
        {"TFX_QAT_PIPELINE": "team_pipeline:no_such_function"}]
    out = subprocess.run([sys.executable, "-c", LOAD, json.dumps(configs), DAGS], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_team_pipeline_factory_loads_as_a_dag(loaded):
    team = loaded[0]
    assert team["errors"] == [] and set(team["dags"]) == {"penguin-qat"}
    assert PENGUIN_NODES <= set(team["dags"]["penguin-qat"]), team["dags"]


def test_cli_command_line_dag_carries_its_gate_and_settings(loaded):
    cli = loaded[1]
    assert cli["errors"] == [] and set(cli["dags"]) == {"tfx-qat-digits"}
    tasks = cli["dags"]["tfx-qat-digits"]
    assert DIGITS_NODES <= set(tasks)
    assert "-0.015" in tasks["QuantEvaluator"]["eval_config"]  # the team's EvalConfig file
    assert json.loads(tasks["QuantizeTrainer"]["config"])["epochs"] == 3


def test_bad_settings_fail_the_dag_import_naming_them(loaded):
    bad_gate, bad_factory = loaded[2], loaded[3]
    assert bad_gate["dags"] == {} and "max_accuracy_drop_pt" in " ".join(bad_gate["errors"])
    assert bad_factory["dags"] == {}
    assert "team_pipeline has no function no_such_function" in " ".join(bad_factory["errors"])


def test_dags_test_runs_the_team_pipeline_to_a_verified_push(env, tmp_path):
    e = dict(env, TFX_QAT_PIPELINE="team_pipeline:create_pipeline",
             TFX_QAT_PIPELINE_KWARGS=json.dumps({"root": str(tmp_path)}))
    r = subprocess.run([AIRFLOW, "dags", "test", "penguin-qat", "2026-01-02"], env=e,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(
        os.path.join(tmp_path, "metadata.sqlite")))
    types = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    states = {types[x.type_id]: x.last_known_state for x in store.get_executions()}
    assert PENGUIN_NODES - {"VerifiedPusher"} <= set(states), states
    assert all(v == metadata_store_pb2.Execution.COMPLETE for v in states.values()), states
    blessing = store.get_artifacts_by_type("ModelBlessing")[-1]
    pushed = store.get_artifacts_by_type("PushedModel")[-1]
    blessed = blessing.custom_properties["blessed"].int_value
    assert pushed.custom_properties["pushed"].int_value == blessed
    if blessed:
        import hashlib
        dest = pushed.custom_properties["pushed_destination"].string_value
        with open(os.path.join(dest, "tflite"), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == \
                blessing.custom_properties["int8_sha256"].string_value
