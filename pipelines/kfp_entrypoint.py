"""The container command of every step ``compile_pipeline`` emits for Kubeflow Pipelines v2 and
Vertex AI: TFX 1.16's ``kubeflow_v2_run_executor``, after typing the step's input artifacts from
the component's own inputs spec wherever the orchestrator did not type them as TFX reads types.

Vertex AI hands each input artifact with its producer's schema (``title: tfx.Examples``), which
TFX's entrypoint maps to a class. Open-source Kubeflow Pipelines does not (KFP 2.16.1 source):

- Its driver resolves an upstream artifact from the metadata store with an EMPTY schema:
  ``backend/src/v2/metadata/client.go:1061`` (``Schema: "", // TODO(Bobgy): figure out how to get
  schema``), turned into the input's type by ``OutputArtifact.ToRuntimeArtifact`` (client.go:224-
  238, ``InstanceSchema: oa.Schema``); the call is ``driver/resolve.go:785``. TFX's
  ``_retrieve_class_path`` then runs ``yaml.safe_load("").get`` -> ``AttributeError`` (TFX #7768).
- KFP's artifact API (``proposals/12147-mlmd-removal``, ``Artifact.ArtifactType``: Artifact, Model,
  Dataset, ...) types inputs ``system.Dataset`` / ``system.Model`` / ``system.Artifact``: TFX
  tries to import ``system.Dataset`` and fails; distinct TFX types share one title.

Either way the title cannot be trusted, so the compiler passes each component's input definitions
as ``--tfx_qat_inputs_spec`` and each input typed otherwise than by a ``tfx.*`` title gets the
spec's type. Outputs keep the type the compiled spec gives them, which both KFP generations hand
over unchanged.
"""
from __future__ import annotations

import json
import logging
import sys
from typing import List, Optional, Tuple

INPUTS_SPEC_FLAG = "--tfx_qat_inputs_spec"
INVOCATION_FLAG = "--json_serialized_invocation_args"
MODULE = "pipelines.kfp_entrypoint"
TFX_ENTRYPOINT = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"


def _title(artifact_type: dict) -> Optional[str]:
    """The schema title an ArtifactTypeSchema (as JSON) names; None when it names none."""
    if artifact_type.get("schemaTitle"):
        return artifact_type["schemaTitle"]
    import yaml
    data = yaml.safe_load(artifact_type.get("instanceSchema") or "")
    return data.get("title") if isinstance(data, dict) else None


def _trusted(title: Optional[str]) -> bool:
    """A title TFX's entrypoint maps to the right class: ``tfx.*`` (its first-party types) or a
    custom type's ``module.Class`` path; not KFP's ``system.*`` generics, nor none at all."""
    return bool(title) and not title.startswith("system.")


def retype_inputs(invocation: dict, inputs_spec: dict) -> List[Tuple[str, Optional[str], str]]:
    """Types ``invocation``'s input artifacts (ExecutorInput JSON, edited in place) from
    ``inputs_spec`` (the component's inputDefinitions) where the orchestrator's type cannot be
    trusted; returns (input key, type given, type used) for each one changed."""
    specs = inputs_spec.get("artifacts", {})
    changed = []
    for key, artifact_list in invocation.get("inputs", {}).get("artifacts", {}).items():
        for artifact in artifact_list.get("artifacts", []):
            given = artifact.get("type") or {}
            if _trusted(_title(given)):
                continue
            if key not in specs:
                raise ValueError(
                    f"input artifact {key!r} arrived typed {given or 'without a type'} and the "
                    f"component's inputs spec has no such key ({sorted(specs)}): recompile the "
                    "pipeline with pipelines.kubeflow_v2_runner.compile_pipeline")
            artifact["type"] = specs[key]["artifactType"]
            changed.append((key, _title(given), _title(artifact["type"])))
    return changed


def _split(argv: List[str]) -> Tuple[List[str], Optional[dict]]:
    """argv without ``--tfx_qat_inputs_spec VALUE``, and that value parsed."""
    if INPUTS_SPEC_FLAG not in argv:
        return list(argv), None
    i = argv.index(INPUTS_SPEC_FLAG)
    return argv[:i] + argv[i + 2:], json.loads(argv[i + 1])


def prepare(argv: List[str]) -> List[str]:
    """TFX's entrypoint arguments with the invocation's inputs typed (logged)."""
    argv, spec = _split(argv)
    if spec is None or INVOCATION_FLAG not in argv:
        return argv
    i = argv.index(INVOCATION_FLAG) + 1
    invocation = json.loads(argv[i])
    for key, given, used in retype_inputs(invocation, spec):
        logging.info("tfx-qat: input %r arrived typed %r; typed %r from the component's inputs "
                     "spec", key, given, used)
    argv[i] = json.dumps(invocation)
    return argv


def main(argv: Optional[List[str]] = None) -> None:
    """Runs TFX's entrypoint as its own ``__main__`` on the prepared arguments."""
    import runpy
    sys.argv = [TFX_ENTRYPOINT] + prepare(list(sys.argv[1:] if argv is None else argv))
    runpy.run_module(TFX_ENTRYPOINT, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
