"""Kubeflow Pipelines v2 / Vertex AI: compiles any TFX pipeline that uses tfx-qat's components to a
KFP v2 PipelineJob spec (JSON).

``compile_pipeline(pipeline, image, path)`` takes the user's own ``tfx.dsl.Pipeline`` object, as
built for LocalDagRunner (Transform, module files, tfx-qat's four components). TFX's
KubeflowV2DagRunner only needs ``kfp-pipeline-spec`` (the ``kfp`` extra) to compile. Every step then
runs TFX's container entrypoint (``kubeflow_v2_run_executor``) in ``image`` (the repository's
Dockerfile, ``make image``), so what a local run reads from this machine must be where the
containers can read it: the pipeline root, the data root and the push destination on ``gs://``
(or another filesystem every step mounts), module files on ``gs://`` or packaged by TFX at compile
time into a wheel under the pipeline root. ``check_reachable`` says which path is not, before
compiling. Submit the JSON with Vertex AI (``google.cloud.aiplatform.PipelineJob(template_path=...)``,
installed with TFX) or the KFP v2 UI.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Optional

from tfx.components.util import udf_utils
from tfx.orchestration.pipeline import Pipeline

from tfx_qat.pipelines.pipeline import PipelineSettings, create_pipeline
from tfx_qat.quant_lib.config import ConfigError

KFP_SPEC_FILE = "pipeline.json"
# Exec properties that name paths a step reads or writes at run time.
PATH_PROPERTIES = ("input_base", "module_file")


def _local(path: str) -> bool:
    return bool(path) and "://" not in path


def check_reachable(pipeline: Pipeline) -> List[str]:
    """What a container could not read or write: local paths in the pipeline root and the
    components' data roots, module files and push destinations (one line each, naming them)."""
    problems = []
    if _local(pipeline.pipeline_info.pipeline_root):
        problems.append(f"pipeline_root {pipeline.pipeline_info.pipeline_root!r}: every step "
                        "writes its artifacts there; use gs://... (or a path every pod mounts)")
    for component in pipeline.components:
        props = component.exec_properties
        for key in PATH_PROPERTIES:
            value = props.get(key)
            if not isinstance(value, str) or not _local(value):
                continue
            if key == "module_file" and udf_utils.should_package_user_modules():
                continue  # TFX packages it at compile time into a wheel under the pipeline root
            problems.append(f"{component.id}.{key} {value!r} is a local path the container cannot "
                            "read; copy it to gs://... and pass that")
        base = _push_base(props.get("push_destination"))
        if base is not None:
            if _local(base):
                problems.append(f"{component.id}.push_destination.filesystem.base_directory "
                                f"{base!r} is local to this machine; push to gs://... (what your "
                                "serving or app update service reads)")
    return problems


def _push_base(dest) -> Optional[str]:
    """A Pusher's push_destination (proto or its JSON) -> the filesystem base directory."""
    if dest is None:
        return None
    if isinstance(dest, str):
        from tfx.proto import pusher_pb2
        from tfx.utils import proto_utils
        dest = proto_utils.json_to_proto(dest, pusher_pb2.PushDestination())
    return dest.filesystem.base_directory if dest.HasField("filesystem") else None


NAME_RULE = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


def _suggest(name: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:128] or "pipeline"


def compile_pipeline(pipeline: Pipeline, image: str, output_path: str,
                     display_name: Optional[str] = None,
                     allow_local_paths: bool = False) -> Dict[str, Any]:
    """Compiles ``pipeline`` (any TFX pipeline object) for KFP v2 / Vertex into ``output_path``;
    returns the PipelineJob as a dict. ConfigError, before compiling, when a path is local to this
    machine (``allow_local_paths``: for a run where every step shares this filesystem)."""
    try:
        from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kfp_runner
    except ImportError as e:  # kfp.pipeline_spec missing
        raise ConfigError(
            f"compiling for Kubeflow V2 needs the kfp extra ({e}); install it with "
            "`pip install -c constraints.txt -e '.[kfp]'`") from e
    if not image:
        raise ConfigError("image is required: the container image every KFP step runs in "
                          "(the repository's Dockerfile: make image)")
    problems = [] if allow_local_paths else check_reachable(pipeline)
    name = pipeline.pipeline_info.pipeline_name
    if not NAME_RULE.fullmatch(name):  # TFX's own message prints "%" for the name
        problems.insert(0, f"pipeline name {name!r}: KFP v2 and Vertex need lowercase letters, "
                           f"digits and '-' ({NAME_RULE.pattern}; TFX pipeline_builder.py "
                           f"_LEGAL_NAME_PATTERN): e.g. {_suggest(name)!r}")
    if problems:
        raise ConfigError("the pipeline reads or writes paths the KFP containers cannot reach:\n  "
                          + "\n  ".join(problems))
    output_dir, output_filename = os.path.split(output_path)
    if "://" not in output_dir:
        output_dir = os.path.abspath(output_dir or ".")
        os.makedirs(output_dir, exist_ok=True)
    config = kfp_runner.KubeflowV2DagRunnerConfig(default_image=image, display_name=display_name)
    runner = kfp_runner.KubeflowV2DagRunner(config=config, output_dir=output_dir,
                                            output_filename=output_filename)
    job = with_tfx_qat_entrypoint(runner.run(pipeline, write_out=False))
    from tfx.dsl.io import fileio
    with fileio.open(os.path.join(output_dir, output_filename), "w") as f:
        f.write(json.dumps(job, indent=2, sort_keys=True))
    return job


def with_tfx_qat_entrypoint(job: Dict[str, Any]) -> Dict[str, Any]:
    """Every executor that runs TFX's v2 entrypoint runs ``tfx_qat.pipelines.kfp_entrypoint`` instead,
    with its component's input definitions, so its inputs are typed as TFX needs under
    open-source Kubeflow Pipelines' driver too (that module's doc); Vertex is unaffected."""
    from tfx_qat.pipelines import kfp_entrypoint as entry
    spec = job["pipelineSpec"]
    for component in spec["components"].values():
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]].get(
            "container", {})
        if container.get("command") != ["python", "-m", entry.TFX_ENTRYPOINT]:
            continue
        container["command"] = ["python", "-m", entry.MODULE]
        inputs = component.get("inputDefinitions", {})
        if inputs.get("artifacts"):  # after the invocation, before the Beam arguments
            args = container["args"]
            at = args.index(entry.INVOCATION_FLAG) + 2
            container["args"] = args[:at] + [entry.INPUTS_SPEC_FLAG,
                                             json.dumps(inputs, sort_keys=True)] + args[at:]
    return job


def compile_kfp_v2(settings: PipelineSettings, image: str, output_dir: str,
                   output_filename: str = KFP_SPEC_FILE, display_name: Optional[str] = None,
                   allow_local_paths: bool = False) -> Dict[str, Any]:
    """The built-in image pipeline (``tfx_qat.pipelines.cli compile-kfp``), compiled as any other."""
    return compile_pipeline(create_pipeline(settings, for_container=True), image,
                            os.path.join(output_dir, output_filename), display_name,
                            allow_local_paths)


def load_spec(path: str) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
