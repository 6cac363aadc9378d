"""Faults with real processes: the pipeline (CLI, LocalDagRunner) is killed with SIGKILL inside
QuantizeTrainer, then inside IntegerExporter, then inside QuantEvaluator; each rerun reuses the
upstream artifacts from TFX's cache, and the final run pushes a model built only from artifacts of
completed executions. A last rerun with nothing changed is cached end to end."""
import os
import signal
import subprocess
import sys
import time

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd_pb2
from tfx.orchestration import metadata

pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPLETE, CACHED, RUNNING = (mlmd_pb2.Execution.COMPLETE, mlmd_pb2.Execution.CACHED,
                             mlmd_pb2.Execution.RUNNING)
ORDER = ["ImportExampleGen", "StatisticsGen", "SchemaGen", "Trainer", "QuantizeTrainer",
         "IntegerExporter", "QuantEvaluator", "Pusher"]
# Where each component's first output directory appears once its executor is about to run.
MARKER = {"QuantizeTrainer": "QuantizeTrainer/qat_model", "IntegerExporter":
          "IntegerExporter/quantized_model", "QuantEvaluator": "QuantEvaluator/blessing"}


def _cmd(root):
    return [sys.executable, "-m", "tfx_qat.pipelines.cli", "run", "--dataset", "digits", "--output-root",
            str(root), "--float-epochs", "10", "--qat-epochs", "2", "--max-accuracy-drop-pt", "2"]


def _run_and_kill(root, component, log):
    """Starts a run, SIGKILLs its process group once `component`'s executor has started."""
    marker = os.path.join(root, "pipeline_root", MARKER[component])
    before = set(os.listdir(marker)) if os.path.isdir(marker) else set()
    with open(log, "ab") as out:
        p = subprocess.Popen(_cmd(root), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and p.poll() is None:
        if os.path.isdir(marker) and set(os.listdir(marker)) - before:
            time.sleep(1.0)  # let the executor get going
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return
        time.sleep(0.2)
    raise AssertionError(f"{component} never started (rc={p.poll()}); see {log}")


def _store(root):
    return metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(
        os.path.join(root, "metadata.sqlite")))


def _latest_run(store):
    run = max(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id)
    types = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    return {types[e.type_id].replace("VerifiedPusher", "Pusher"): e
            for e in store.get_executions_by_context(run.id)}


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    log = root / "runs.log"
    snapshots = {}
    for component in ("QuantizeTrainer", "IntegerExporter", "QuantEvaluator"):
        _run_and_kill(root, component, log)
        snapshots[component] = {k: e.last_known_state for k, e in _latest_run(_store(root)).items()}
    t0 = time.time()
    rc = subprocess.run(_cmd(root), cwd=REPO, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    final_seconds = time.time() - t0
    assert rc.returncode == 0, f"rerun after kills failed; see {log}"
    final = _latest_run(_store(root))
    t0 = time.time()
    rc = subprocess.run(_cmd(root), cwd=REPO, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    cached_seconds = time.time() - t0
    assert rc.returncode == 0
    again = _latest_run(_store(root))
    return root, snapshots, final, again, final_seconds, cached_seconds


@pytest.mark.parametrize("component", list(MARKER))
def test_killed_component_left_running_and_upstream_was_reused(killed_runs, component):
    _, snapshots, _, _, _, _ = killed_runs
    states = snapshots[component]
    assert states[component] == RUNNING  # killed mid-execution, never published
    i = ORDER.index(component)
    assert not set(ORDER[i + 1:]) & set(states), "nothing downstream of the killed step ran"
    if component != "QuantizeTrainer":  # later kills: everything before the previous kill cached
        assert all(states[n] == CACHED for n in ORDER[:4]), states


def test_rerun_completes_from_completed_artifacts_only(killed_runs):
    root, _, final, _, _, _ = killed_runs
    store = _store(root)
    assert all(final[n].last_known_state in (COMPLETE, CACHED) for n in ORDER), final
    assert final["Pusher"].last_known_state == COMPLETE
    for node in ("IntegerExporter", "QuantEvaluator", "Pusher"):
        events = store.get_events_by_execution_ids([final[node].id])
        inputs = store.get_artifacts_by_id([e.artifact_id for e in events
                                            if e.type == mlmd_pb2.Event.INPUT])
        for a in inputs:
            assert a.state == mlmd_pb2.Artifact.LIVE, (node, a.uri)
            producers = store.get_executions_by_id(
                [e.execution_id for e in store.get_events_by_artifact_ids([a.id])
                 if e.type == mlmd_pb2.Event.OUTPUT])
            assert any(x.last_known_state == COMPLETE for x in producers), (node, a.uri)
    pushed = store.get_artifacts_by_type("PushedModel")[-1]
    assert pushed.custom_properties["pushed"].int_value == 1
    dest = pushed.custom_properties["pushed_destination"].string_value
    assert not [d for d in os.listdir(os.path.dirname(dest)) if d.startswith(".")]


def test_rerun_with_nothing_changed_is_fully_cached(killed_runs):
    _, _, _, again, final_seconds, cached_seconds = killed_runs
    assert all(again[n].last_known_state == CACHED for n in ORDER), {
        n: again[n].last_known_state for n in ORDER}
    print(f"rerun after kills {final_seconds:.0f}s, fully cached rerun {cached_seconds:.0f}s")
