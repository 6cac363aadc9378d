"""`make bench` section ``experiments_store``: how long ``experiments`` takes to list many runs.

A synthetic SQLite MLMD store laid out as LocalDagRunner lays out tfx-qat runs (a pipeline
context, one pipeline_run context per run; QuantizeTrainer, IntegerExporter, QuantEvaluator and
VerifiedPusher executions with their input and output artifacts, properties written through the
same ``tfx_qat.quant_lib.artifacts.records`` records the executors write), then ``experiments.runs`` timed on it.
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from typing import Any, Dict

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb
from tfx.types import standard_artifacts

from tfx_qat.components.utils import set_properties
from tfx_qat.quant_lib.artifacts import records

_EXEC = {"QuantizeTrainer": "tfx_qat.components.quantize_trainer.component.QuantizeTrainer",
         "IntegerExporter": "tfx_qat.components.integer_exporter.component.IntegerExporter",
         "QuantEvaluator": "tfx_qat.components.quant_evaluator.component.QuantEvaluator",
         "VerifiedPusher": "tfx_qat.components.verified_pusher.component.VerifiedPusher"}
_ART = {"Examples": standard_artifacts.Examples, "Model": standard_artifacts.Model,
        "ModelBlessing": standard_artifacts.ModelBlessing,
        "ModelEvaluation": standard_artifacts.ModelEvaluation,
        "PushedModel": standard_artifacts.PushedModel}


def build_store(path: str, n_runs: int, seed: int = 0) -> metadata_store.MetadataStore:
    import random
    rng = random.Random(seed)
    cfg = pb.ConnectionConfig()
    cfg.sqlite.filename_uri = path
    cfg.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(cfg)
    etype = {k: store.put_execution_type(pb.ExecutionType(name=v)) for k, v in _EXEC.items()}
    atype = {k: store.put_artifact_type(pb.ArtifactType(name=k)) for k in _ART}
    ctype = {k: store.put_context_type(pb.ContextType(name=k)) for k in ("pipeline",
                                                                        "pipeline_run")}
    [pipe] = store.put_contexts([pb.Context(type_id=ctype["pipeline"], name="tfx-qat-synthetic")])

    def art(kind, uri, rec=None):
        a = _ART[kind]()
        a.uri = uri
        if rec is not None:
            set_properties(a, rec)
        m = a.mlmd_artifact
        m.type_id = atype[kind]
        m.state = pb.Artifact.LIVE
        return m

    def event(kind, key):
        e = pb.Event(type=kind)
        e.path.steps.add().key = key
        return e

    examples = art("Examples", "/synthetic/examples/0")
    [examples.id] = store.put_artifacts([examples])
    for i in range(n_runs):
        run = pb.Context(type_id=ctype["pipeline_run"], name=f"run-{i:05d}")
        [run.id] = store.put_contexts([run])
        store.put_parent_contexts([pb.ParentContext(child_id=run.id, parent_id=pipe)])
        ctxs = [pb.Context(id=run.id, type_id=run.type_id, name=run.name)]
        per_tensor = bool(i % 2)
        cfg_json = ('{"scheme": "default_8bit", "weight_bits": 8, "activation_bits": 8, '
                    f'"per_tensor": {str(per_tensor).lower()}, "epochs": {1 + i % 3}, '
                    '"learning_rate": 0.0001}')
        qat_exec = pb.Execution(type_id=etype["QuantizeTrainer"],
                                last_known_state=pb.Execution.COMPLETE)
        qat_exec.custom_properties["config"].string_value = cfg_json
        qat = art("Model", f"/synthetic/{i}/qat", records.QatModel(
            qat_scheme="default_8bit", per_tensor=per_tensor, quantized_layers=10,
            folded_layers=9, float_layers=0, float_layer_names=[], qat_seconds_per_step=0.01))
        _, [_, qat.id], _ = store.put_execution(qat_exec, [
            (examples, event(pb.Event.INPUT, "examples")),
            (qat, event(pb.Event.OUTPUT, "qat_model"))], ctxs)
        int8 = art("Model", f"/synthetic/{i}/int8", records.Int8Model(
            int8_tflite_bytes=100_000 + rng.randrange(5_000), float_tflite_bytes=380_000,
            integer_validated=True, op_counts={"CONV_2D": 3}, edgetpu_predicted_ops_on_tpu=12))
        _, [_, int8.id], _ = store.put_execution(
            pb.Execution(type_id=etype["IntegerExporter"], last_known_state=pb.Execution.COMPLETE),
            [(qat, event(pb.Event.INPUT, "model")),
             (int8, event(pb.Event.OUTPUT, "quantized_model"))], ctxs)
        n, fc, ic = 1000, 950, 950 - rng.randrange(20)
        ev = records.Evaluation(task="multiclass", eval_examples=n, float_correct=fc,
                                int8_correct=ic, float_accuracy=fc / n, int8_accuracy=ic / n,
                                int8_latency_ms=0.002, float_latency_ms=0.005)
        blessing = art("ModelBlessing", f"/synthetic/{i}/blessing", records.Blessing(
            blessed=fc - ic <= 10, blessing_reasons=[], int8_sha256="0" * 64).merged(ev))
        evaluation = art("ModelEvaluation", f"/synthetic/{i}/evaluation", ev)
        _, [_, _, blessing.id, _], _ = store.put_execution(
            pb.Execution(type_id=etype["QuantEvaluator"], last_known_state=pb.Execution.COMPLETE),
            [(int8, event(pb.Event.INPUT, "quantized_model")),
             (examples, event(pb.Event.INPUT, "examples")),
             (blessing, event(pb.Event.OUTPUT, "blessing")),
             (evaluation, event(pb.Event.OUTPUT, "evaluation"))], ctxs)
        pushed = art("PushedModel", f"/synthetic/{i}/pushed", records.Pushed(
            pushed=fc - ic <= 10, pushed_destination=f"/serving/{i}"))
        store.put_execution(
            pb.Execution(type_id=etype["VerifiedPusher"], last_known_state=pb.Execution.COMPLETE),
            [(int8, event(pb.Event.INPUT, "model")), (blessing, event(pb.Event.INPUT,
                                                                      "model_blessing")),
             (pushed, event(pb.Event.OUTPUT, "pushed_model"))], ctxs)
    return store


def experiments_store(args) -> Dict[str, Any]:
    """Builds a store of ``args.experiments_runs`` runs and times listing them (median of 3)."""
    from tfx_qat.pipelines import experiments
    path = os.path.join(os.path.abspath(args.out), "experiments_store.sqlite")
    if os.path.exists(path):
        os.remove(path)
    t = time.perf_counter()
    build_store(path, args.experiments_runs)
    built = time.perf_counter() - t
    seconds, rows, process = [], [], []
    for _ in range(3):
        t = time.perf_counter()
        rows = experiments.runs(experiments.connect(path))
        seconds.append(time.perf_counter() - t)
        t = time.perf_counter()  # the whole command as a user types it: start-up included
        subprocess.run([sys.executable, "-m", "tfx_qat.pipelines.cli", "experiments", path],
                       check=True, stdout=subprocess.DEVNULL)
        process.append(time.perf_counter() - t)
    return {"runs": len(rows), "build_seconds": built, "list_seconds": statistics.median(seconds),
            "list_seconds_all": seconds, "process_seconds": statistics.median(process),
            "process_seconds_all": process}


def markdown(r: Dict[str, Any]) -> str:
    e = r["experiments_store"]
    date = r.get("rerun", {}).get("experiments_store", {}).get("date", r["date"])
    if "process_seconds" in e:
        took = (f"took **{e['process_seconds']:.2f} s** for the whole process, start-up included "
                "(it imports neither TensorFlow nor TFX; `experiments.runs` called inside the "
                f"bench's own process, which holds TensorFlow, took {e['list_seconds']:.2f} s) ")
    else:
        took = f"took **{e['list_seconds']:.2f} s** "
    return (f"Listing **{e['runs']:,} runs** from one SQLite MLMD store with "
            f"`python -m tfx_qat.pipelines.cli experiments` {took}(median of 3; `make bench` section "
            f"`experiments_store`, {date}, {r['machine']}; a synthetic store laid out as "
            "LocalDagRunner lays out tfx-qat runs: 4 executions and 6 artifacts per run).\n")


EXAMPLE_COLUMNS = ("time", "status", "per_tensor", "epochs", "metric", "float", "int8", "delta",
                   "int8_bytes", "int8_latency_ms", "float_latency_ms", "blessed", "pushed")


def experiments_example(args) -> Dict[str, Any]:
    """Three runs of the digits image pipeline into one output root (default; --per-tensor;
    --qat-epochs 2 with --min-int8-accuracy 1.0, not blessed), then what ``experiments`` lists
    and what ``--diff 1 2`` shows: the README's excerpt."""
    import shutil
    from tfx_qat.pipelines import cli, experiments
    root = os.path.join(os.path.abspath(args.out), "experiments_example")
    shutil.rmtree(root, ignore_errors=True)
    flags = [[], ["--per-tensor"], ["--qat-epochs", "2", "--min-int8-accuracy", "1.0"]]
    for extra in flags:
        code = cli.main(["run", "--dataset", "digits", "--output-root", root, "--float-epochs",
                         "10", "--max-accuracy-drop-pt", "2", *extra])
        if code != 0:
            raise RuntimeError(f"experiments_example: run {extra} exited {code}")
    rows = experiments.runs(experiments.connect(root))
    return {"commands": ["python -m tfx_qat.pipelines.cli run --dataset digits --float-epochs 10 "
                         "--max-accuracy-drop-pt 2 " + " ".join(f) for f in flags],
            "rows": [{k: r[k] for k in EXAMPLE_COLUMNS} for r in rows],
            "diff": {k: list(v) for k, v in experiments.diff(rows, "1", "2").items()}}


def example_markdown(r: Dict[str, Any]) -> str:
    from tfx_qat.pipelines import experiments
    e = r["experiments_example"]
    date = r.get("rerun", {}).get("experiments_example", {}).get("date", r["date"])
    cmds = "\n".join(f"{c.rstrip()} --output-root runs/exp" for c in e["commands"])
    cell = experiments.cell_text

    def short(v):  # the bench's output root, as the commands above name it
        return re.sub(r"\S*/experiments_example", "runs/exp", cell(v))
    diff = "\n".join(f"  {k:22s} {short(a):>24s} -> {short(b)}" for k, (a, b) in e["diff"].items())
    return (f"`make bench` section `experiments_example` ({date}, {r['machine']}):\n\n"
            f"```\n{cmds}\npython -m tfx_qat.pipelines.cli experiments runs/exp\n"
            f"{experiments.table(e['rows'], EXAMPLE_COLUMNS)}\n"
            f"python -m tfx_qat.pipelines.cli experiments runs/exp --diff 1 2\n"
            f"{len(e['diff'])} field(s) differ between 1 and 2:\n{diff}\n```\n")
