"""A stand-in for Kubeflow Pipelines v2's launcher, to execute a compiled PipelineJob here: every
task, in dependency order, runs its container's own command and arguments (TFX's
``kubeflow_v2_run_executor``, and the ExampleGen driver of its ``preCacheCheck``) as a process in
this venv, with the ExecutorInput JSON the launcher substitutes for ``{{$}}``: constant
parameters, input artifacts as their producers' executor outputs reported them (URI, type *and*
metadata), output artifacts with a fresh URI under the pipeline root and the outputFile. What
the entrypoint writes to that file is what the next task receives, as on Vertex/KFP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Dict, List

PLACEHOLDER = "{{$}}"


def order(tasks: Dict[str, Any]) -> List[str]:
    done: List[str] = []
    while len(done) < len(tasks):
        ready = sorted(t for t, v in tasks.items() if t not in done
                       and set(v.get("dependentTasks", [])) <= set(done))
        if not ready:
            raise ValueError(f"cycle among {sorted(set(tasks) - set(done))}")
        done += ready
    return done


def _inputs(task, produced) -> Dict[str, Any]:
    params = {k: v["runtimeValue"]["constantValue"]
              for k, v in task.get("inputs", {}).get("parameters", {}).items()}
    artifacts = {}
    for key, source in task.get("inputs", {}).get("artifacts", {}).items():
        src = source["taskOutputArtifact"]
        artifacts[key] = {"artifacts": [produced[src["producerTask"]][src["outputArtifactKey"]]]}
    return {"parameters": params, "artifacts": artifacts}


def _outputs(name, component, task_root) -> Dict[str, Any]:
    definitions = component.get("outputDefinitions", {}).get("artifacts", {})
    return {"artifacts": {k: {"artifacts": [{
        "name": f"projects/local/locations/here/metadataStores/default/artifacts/{name}-{k}",
        "uri": os.path.join(task_root, k), "type": d["artifactType"], "metadata": {}}]}
        for k, d in definitions.items()},
        "outputFile": os.path.join(task_root, "executor_output.json")}


def _call(container_part: Dict[str, Any], invocation: Dict[str, Any], log) -> None:
    args = [a.replace(PLACEHOLDER, json.dumps(invocation)) for a in container_part["args"]]
    command = list(container_part["command"])
    assert command[0] == "python", command  # the image's python is this venv's here
    proc = subprocess.run([sys.executable] + command[1:] + args, stdout=log,
                          stderr=subprocess.STDOUT, timeout=900)
    if proc.returncode:
        raise RuntimeError(f"{command} {args[:2]} exited {proc.returncode}; log: {log.name}")


def _reported(invocation) -> Dict[str, Dict[str, Any]]:
    """The output artifacts as the task reported them in its outputFile (KFP's launcher keeps the
    artifact's name and type, and takes URI and metadata from the executor output)."""
    with open(invocation["outputs"]["outputFile"]) as f:
        written = json.load(f).get("artifacts", {})
    out = {}
    for key, given in invocation["outputs"]["artifacts"].items():
        art = dict(given["artifacts"][0])
        if key in written:
            art.update({k: v for k, v in written[key]["artifacts"][0].items()
                        if k in ("uri", "metadata")})
        out[key] = art
    return out


def run(job: Dict[str, Any], log_dir: str) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """Runs every task of ``job``; returns task -> output key -> RuntimeArtifact (as JSON)."""
    spec = job["pipelineSpec"]
    root = job["runtimeConfig"]["gcsOutputDirectory"]
    produced: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for name in order(spec["root"]["dag"]["tasks"]):
        task = spec["root"]["dag"]["tasks"][name]
        component = spec["components"][task["componentRef"]["name"]]
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        invocation = {"inputs": _inputs(task, produced),
                      "outputs": _outputs(name, component, os.path.join(root, name, "run"))}
        with open(os.path.join(log_dir, f"{name}.log"), "w") as log:
            driver = container.get("lifecycle", {}).get("preCacheCheck")
            if driver:  # ExampleGen's driver: span, fingerprint, output metadata
                _call(driver, invocation, log)
                for key, art in _reported(invocation).items():
                    invocation["outputs"]["artifacts"][key]["artifacts"][0] = art
            _call(container, invocation, log)
        produced[name] = _reported(invocation)
    return produced
