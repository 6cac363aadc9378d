"""A failing component surfaces as one message naming it, the error and the log with the traceback."""
import os

import pytest
from tfx import v1 as tfx

from tfx_qat.pipelines.runner import LOG_FILE, PipelineFailed, run_pipeline


def test_failure_names_the_component_and_the_log(tmp_path):
    (tmp_path / "data").mkdir()  # no train/ or eval/ files: ImportExampleGen fails
    root = str(tmp_path / "out")
    example_gen = tfx.components.ImportExampleGen(
        input_base=str(tmp_path / "data"),
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name="train",
                                                                   pattern="train/*")]))
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="fails", pipeline_root=os.path.join(root, "pipeline_root"),
        components=[example_gen],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(root, "metadata.sqlite")))
    with pytest.raises(PipelineFailed) as info:
        run_pipeline(pipeline, root, os.path.join(root, "metadata.sqlite"))
    e = info.value
    assert e.component == "ImportExampleGen"
    assert str(e).startswith("pipeline failed in ImportExampleGen: ")
    assert e.log_path == os.path.join(root, LOG_FILE) and e.log_path in str(e)
    with open(e.log_path) as f:
        log = f.read()
    assert "Traceback (most recent call last)" in log and "No files found" in log
