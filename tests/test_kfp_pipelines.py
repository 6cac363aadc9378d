"""A user's own pipeline on Kubeflow Pipelines v2 / Vertex: TFX's taxi and penguin examples and the
wide-and-deep pipeline (Transform, module files, tfx-qat's four components), each compiled through
``compile_pipeline`` with object-store paths, and the spec checked: every tfx-qat step with its
executor, its config JSON as built, the image, the artifact wiring Trainer -> QuantizeTrainer ->
IntegerExporter -> QuantEvaluator -> Pusher, module files packaged under the pipeline root."""
import json
import os

import pytest

import objstore_fs  # noqa: F401  (registers objstore://, a stand-in for gs:// here)
from tfx_qat.pipelines import penguin, taxi, wide_deep
from tfx_qat.pipelines.kubeflow_v2_runner import compile_pipeline
from tfx_qat.quant_lib.config import ConfigError, EvalConfig, ExportConfig, QuantizationConfig

pytest.importorskip("kfp.pipeline_spec", reason="the kfp extra is part of the dev install")

IMAGE = "europe-docker.pkg.dev/team/ml/tfx-qat:0.1.0"
EXECUTORS = {"QuantizeTrainer": "tfx_qat.components.quantize_trainer.executor.Executor",
             "IntegerExporter": "tfx_qat.components.integer_exporter.executor.Executor",
             "QuantEvaluator": "tfx_qat.components.quant_evaluator.executor.Executor",
             "Pusher": "tfx_qat.components.verified_pusher.executor.Executor"}
CONFIGS = {"QuantizeTrainer": QuantizationConfig, "IntegerExporter": ExportConfig,
           "QuantEvaluator": EvalConfig}
# (consumer, input key) <- (producer, output key): the chain tfx-qat adds to a pipeline.
WIRING = {("QuantizeTrainer", "base_model"): ("Trainer", "model"),
          ("IntegerExporter", "model"): ("QuantizeTrainer", "qat_model"),
          ("QuantEvaluator", "model"): ("Trainer", "model"),
          ("QuantEvaluator", "quantized_model"): ("IntegerExporter", "quantized_model"),
          ("Pusher", "model"): ("IntegerExporter", "quantized_model"),
          ("Pusher", "model_blessing"): ("QuantEvaluator", "blessing")}
PIPELINES = {"taxi": taxi.create_pipeline, "penguin": penguin.create_pipeline,
             "wide_deep": wide_deep.create_pipeline}


def _paths(root):
    return f"{root}/pipeline_root", f"{root}/data", f"{root}/serving", "unused-by-kfp.sqlite"


@pytest.fixture(scope="module", params=sorted(PIPELINES))
def compiled(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    root = f"{objstore_fs.SCHEME}{tmp}/bucket"
    pipeline = PIPELINES[request.param](*_paths(root))
    configs = {c.id: c.exec_properties.get("config") for c in pipeline.components}
    job = compile_pipeline(pipeline, IMAGE, str(tmp / "pipeline.json"))
    with open(tmp / "pipeline.json") as f:
        assert json.load(f) == job
    return request.param, job, configs, root


def _ids(spec):
    """Component role (QuantizeTrainer..., Pusher, Trainer) -> task id, by executor class."""
    by_role = {}
    for task_id, task in spec["root"]["dag"]["tasks"].items():
        component = spec["components"][task["componentRef"]["name"]]
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        args = container["args"]
        executor = args[args.index("--executor_class_path") + 1]
        role = next((r for r, e in EXECUTORS.items() if e == executor), None)
        if role is None and executor.startswith("tfx.components.trainer."):
            role = "Trainer"
        by_role[role or task_id] = (task_id, container)
    return by_role


def test_every_tfx_qat_step_runs_its_executor_in_the_image(compiled):
    name, job, _, _ = compiled
    spec = job["pipelineSpec"]
    roles = _ids(spec)
    assert set(EXECUTORS) | {"Trainer", "Transform", "SchemaGen", "StatisticsGen"} <= set(roles), \
        (name, sorted(roles))
    for role in EXECUTORS:
        container = roles[role][1]
        assert container["image"] == IMAGE
        # tfx-qat's entrypoint around TFX's (pipelines/kfp_entrypoint.py)
        assert container["command"] == ["python", "-m", "tfx_qat.pipelines.kfp_entrypoint"]


def test_configs_reach_the_spec_intact(compiled):
    _, job, configs, _ = compiled
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    roles = _ids(job["pipelineSpec"])
    for role, cls in CONFIGS.items():
        task_id = roles[role][0]
        text = tasks[task_id]["inputs"]["parameters"]["config"]["runtimeValue"][
            "constantValue"]["stringValue"]
        assert text == configs[task_id]
        assert cls.from_json(text).to_json() == text  # decodes and validates


def test_artifacts_flow_from_trainer_to_pusher(compiled):
    _, job, _, _ = compiled
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    roles = _ids(job["pipelineSpec"])
    for (consumer, key), (producer, output) in WIRING.items():
        source = tasks[roles[consumer][0]]["inputs"]["artifacts"][key]["taskOutputArtifact"]
        assert source == {"producerTask": roles[producer][0], "outputArtifactKey": output}, \
            (consumer, key)


def test_module_files_are_packaged_under_the_pipeline_root(compiled):
    """TFX packs each module file at compile time into a wheel under the pipeline root, which the
    containers install; no path of this machine is left in the spec."""
    _, job, _, root = compiled
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    roles = _ids(job["pipelineSpec"])
    for role in ("Trainer", "QuantizeTrainer"):
        params = tasks[roles[role][0]]["inputs"]["parameters"]
        module, wheel = params["module_path"]["runtimeValue"]["constantValue"][
            "stringValue"].split("@")
        assert wheel.startswith(f"{root}/pipeline_root/_wheels/") and wheel.endswith(".whl")
        assert os.path.isfile(objstore_fs.local(wheel))
        assert "module_file" not in params
    assert job["runtimeConfig"]["gcsOutputDirectory"] == f"{root}/pipeline_root"
    assert os.path.dirname(os.path.dirname(os.path.abspath(__file__))) not in json.dumps(job)


def test_local_paths_are_refused_before_compiling(tmp_path):
    pipeline = penguin.create_pipeline(str(tmp_path / "pipeline_root"),
                                       f"{objstore_fs.SCHEME}{tmp_path}/data",
                                       str(tmp_path / "serving"), str(tmp_path / "m.sqlite"))
    with pytest.raises(ConfigError) as info:
        compile_pipeline(pipeline, IMAGE, str(tmp_path / "pipeline.json"))
    text = str(info.value)
    assert "pipeline_root" in text and str(tmp_path / "pipeline_root") in text
    assert "push_destination.filesystem.base_directory" in text and "serving" in text
    assert "input_base" not in text  # the data root is on the (stand-in) object store
    assert not (tmp_path / "pipeline.json").exists()
    assert not (tmp_path / "pipeline_root").exists()  # nothing packaged either


def test_a_pipeline_name_kfp_refuses_is_named_with_the_rule(tmp_path):
    """TFX's examples name pipelines with '_'; KFP v2 refuses that, and TFX's own message prints
    '%' for the name. The compiler names it, the rule and a name that passes, before compiling."""
    root = f"{objstore_fs.SCHEME}{tmp_path}/bucket"
    pipeline = penguin.create_pipeline(*_paths(root))
    pipeline.pipeline_info.pipeline_name = "penguin_qat"
    with pytest.raises(ConfigError, match=r"pipeline name 'penguin_qat'.*\[a-z0-9\].*"
                                          r"'penguin-qat'"):
        compile_pipeline(pipeline, IMAGE, str(tmp_path / "pipeline.json"))
    assert not (tmp_path / "pipeline.json").exists()


def test_the_readmes_own_pipeline_snippet_compiles_for_vertex(tmp_path):
    """The README's "Your own TFX pipeline" snippet, run as written after TFX's penguin example
    (its upstream components), gives a pipeline that compiles: the four components, the
    latest-blessed resolver wired into QuantEvaluator, the gs:// push destination."""
    import re
    from tfx import v1 as tfx
    from benchmarks import readme
    with open(readme.README) as f:
        text = f.read()
    [snippet] = re.findall(r"## Your own TFX pipeline.*?```python\n(.*?)```", text, re.S)
    root = f"{objstore_fs.SCHEME}{tmp_path}/bucket"
    module_file = penguin.penguin_module_file()
    # TFX's penguin example up to its Trainer, as pipelines/penguin.py builds it.
    example_gen = tfx.components.CsvExampleGen(input_base=f"{root}/data")
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"])
    transform = tfx.components.Transform(examples=example_gen.outputs["examples"],
                                         schema=schema_gen.outputs["schema"],
                                         module_file=module_file)
    trainer = tfx.components.Trainer(
        module_file=module_file, examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"], schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=100), eval_args=tfx.proto.EvalArgs(num_steps=5))
    ns = {"example_gen": example_gen, "statistics_gen": statistics_gen, "schema_gen": schema_gen,
          "transform": transform, "trainer": trainer, "module_file": module_file,
          "eval_config": penguin.penguin_eval_config()}
    exec(compile(snippet, "README.md", "exec"), ns)  # pylint: disable=exec-used
    components = [example_gen, statistics_gen, schema_gen, transform, trainer]
    components += ns["chain"].components
    pipeline = tfx.dsl.Pipeline(pipeline_name="readme-snippet",
                                pipeline_root=f"{root}/pipeline_root", components=components)
    job = compile_pipeline(pipeline, IMAGE, str(tmp_path / "pipeline.json"))
    spec = json.dumps(job)
    tasks = (job.get("pipelineSpec") or job)["root"]["dag"]["tasks"]
    for task in ("QuantizeTrainer", "IntegerExporter", "QuantEvaluator", "VerifiedPusher"):
        assert task in tasks, sorted(tasks)
    baseline = tasks["QuantEvaluator"]["inputs"]["artifacts"]["baseline_model"]
    assert baseline["taskOutputArtifact"]["producerTask"] == \
        "latest_blessed_int8_resolver-model-resolver"
    assert "gs://my-bucket/serving/penguin" in spec
