"""Kubeflow Pipelines v2 / Vertex AI: compiles the same pipeline definition to a KFP v2 pipeline spec.

TFX's KubeflowV2DagRunner only needs ``kfp-pipeline-spec`` (the ``kfp`` extra) to compile. Every step
then runs in ``image`` (an image with this package installed, e.g. built from the repository's
setup.py on top of ``gcr.io/tfx-oss-public/tfx:1.16.0``), so the Trainer uses the installed module
(``run_fn``) rather than a local module file, and data/pipeline root must be paths every step can read
(``gs://...``). Submit the JSON with Vertex AI (``google.cloud.aiplatform.PipelineJob(template_path=...)``,
installed with TFX) or the KFP v2 UI.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

from pipelines.pipeline import PipelineSettings, create_pipeline

KFP_SPEC_FILE = "pipeline.json"


def compile_kfp_v2(settings: PipelineSettings, image: str, output_dir: str,
                   output_filename: str = KFP_SPEC_FILE,
                   display_name: Optional[str] = None) -> Dict[str, Any]:
    """Writes ``output_dir/output_filename`` and returns the compiled PipelineJob as a dict."""
    try:
        from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kfp_runner
    except ImportError as e:  # kfp.pipeline_spec missing
        raise RuntimeError(
            f"compiling for Kubeflow V2 needs the kfp extra ({e}); install it with "
            "`pip install -c constraints.txt -e '.[kfp]'`") from e
    if not image:
        raise ValueError("image is required: the container image every KFP step runs in "
                         "(one with tfx-qat installed)")
    config = kfp_runner.KubeflowV2DagRunnerConfig(default_image=image, display_name=display_name)
    runner = kfp_runner.KubeflowV2DagRunner(config=config, output_dir=output_dir,
                                            output_filename=output_filename)
    if "://" not in output_dir:
        os.makedirs(output_dir, exist_ok=True)
    return runner.run(create_pipeline(settings, for_container=True), write_out=True)


def load_spec(path: str) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
