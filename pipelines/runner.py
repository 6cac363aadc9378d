"""Local runner: LocalDagRunner + SQLite MLMD + Beam DirectRunner, then the run summary."""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict

from tfx import v1 as tfx
from tfx.dsl.io import fileio

from pipelines.pipeline import PipelineSettings, create_pipeline
from pipelines.summary import build_summary, format_summary

log = logging.getLogger(__name__)
SUMMARY_FILE = "summary.json"


def run_local(settings: PipelineSettings) -> Dict[str, Any]:
    """Runs the pipeline to completion and writes ``<output_root>/summary.json``."""
    fileio.makedirs(settings.output_root)
    t0 = time.time()
    log.info("running pipeline %r; artifacts under %s, MLMD at %s", settings.name,
             settings.pipeline_root, settings.metadata_path)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(settings))
    summary = build_summary(settings.metadata_path, settings.name)
    summary["wall_seconds"] = round(time.time() - t0, 1)
    summary["output_root"] = os.path.abspath(settings.output_root)
    path = os.path.join(settings.output_root, SUMMARY_FILE)
    with fileio.open(path, "w") as f:
        f.write(json.dumps(summary, indent=2))
    summary["summary_path"] = path
    return summary


def print_summary(summary: Dict[str, Any]) -> None:
    print(format_summary(summary))
    print(f"summary written to {summary['summary_path']} (pipeline wall time "
          f"{summary['wall_seconds']:.0f}s)")
