"""Kubeflow V2: the one pipeline definition compiles to a KFP v2 PipelineJob spec whose tfx-qat
steps carry our executor classes, channels, configs and Beam args (parsed and checked)."""
import json

import pytest

from tfx_qat.components.integer_exporter.spec import IntegerExporterSpec
from tfx_qat.components.quant_evaluator.spec import QuantEvaluatorSpec
from tfx_qat.components.quantize_trainer.spec import QuantizeTrainerSpec
from tfx_qat.pipelines import cli
from tfx_qat.quant_lib.config import EvalConfig, ExportConfig, QuantizationConfig

pytest.importorskip("kfp.pipeline_spec", reason="the kfp extra is part of the dev install")

OURS = {"QuantizeTrainer": (QuantizeTrainerSpec, QuantizationConfig,
                            "tfx_qat.components.quantize_trainer.executor.Executor"),
        "IntegerExporter": (IntegerExporterSpec, ExportConfig,
                            "tfx_qat.components.integer_exporter.executor.Executor"),
        "QuantEvaluator": (QuantEvaluatorSpec, EvalConfig,
                           "tfx_qat.components.quant_evaluator.executor.Executor")}
BEAM = ["--runner=DataflowRunner", "--project=my-project", "--region=us-central1",
        "--temp_location=gs://bucket/tmp"]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp") / "pipeline.json"
    rc = cli.main(["compile-kfp", "--dataset", "fashion_mnist", "--image", "gcr.io/p/tfx-qat:1",
                   "--output-root", "gs://bucket/tfx-qat", "--data-root", "gs://bucket/data",
                   "--output", str(out), "--qat-epochs", "3", "--max-accuracy-drop-pt", "0.5",
                   "--max-regression-pt", "0.2", *[f"--beam-arg={a}" for a in BEAM]])
    assert rc == 0
    with open(out) as f:
        return json.load(f)


def _const(task, name):
    return task["inputs"]["parameters"][name]["runtimeValue"]["constantValue"]["stringValue"]


def test_spec_has_every_step_in_dependency_order(job):
    spec = job["pipelineSpec"]
    tasks = spec["root"]["dag"]["tasks"]
    assert {"ImportExampleGen", "StatisticsGen", "SchemaGen", "Trainer", "QuantizeTrainer",
            "IntegerExporter", "QuantEvaluator", "Pusher"} <= set(tasks)
    assert set(tasks["QuantizeTrainer"]["dependentTasks"]) >= {"Trainer", "ImportExampleGen"}
    assert "IntegerExporter" in tasks["QuantEvaluator"]["dependentTasks"]
    assert "QuantEvaluator" in tasks["Pusher"]["dependentTasks"]
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/tfx-qat/pipeline_root"
    # The Trainer imports the installed module in the container; no local file path leaks in.
    assert _const(tasks["Trainer"], "run_fn") == "tfx_qat.pipelines.modules.cnn_trainer.run_fn"
    assert "/work/" not in json.dumps(job) and "module_file" not in tasks["Trainer"]["inputs"][
        "parameters"]


@pytest.mark.parametrize("name", sorted(OURS))
def test_tfx_qat_steps_have_executor_channels_and_config(job, name):
    spec_cls, config_cls, executor = OURS[name]
    spec = job["pipelineSpec"]
    task = spec["root"]["dag"]["tasks"][name]
    component = spec["components"][task["componentRef"]["name"]]
    container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
    assert container["image"] == "gcr.io/p/tfx-qat:1"
    args = container["args"]
    assert args[args.index("--executor_class_path") + 1] == executor
    assert set(component["inputDefinitions"]["artifacts"]) <= set(spec_cls.INPUTS)
    required = {k for k, p in spec_cls.INPUTS.items() if not p.optional}
    assert required <= set(component["inputDefinitions"]["artifacts"])
    assert set(component["outputDefinitions"]["artifacts"]) == set(spec_cls.OUTPUTS)
    config = config_cls.from_json(_const(task, "config"))  # validates on decode
    assert config.data.image_shape == (28, 28, 1)
    if name == "QuantizeTrainer":
        assert config.epochs == 3
    if name == "QuantEvaluator":
        assert config.max_accuracy_drop_pt == 0.5
        assert config.max_regression_vs_baseline_pt == 0.2
        assert "baseline_model" in task["inputs"]["artifacts"]  # resolver wired for the gate
        assert args[-len(BEAM):] == BEAM  # Beam work goes to the distributed runner


def test_push_destination_is_under_the_output_root(job):
    task = job["pipelineSpec"]["root"]["dag"]["tasks"]["Pusher"]
    dest = json.loads(_const(task, "push_destination"))
    assert dest["filesystem"]["base_directory"] == "gs://bucket/tfx-qat/serving"


def test_compile_without_a_data_spec_is_a_clear_error(tmp_path, capsys):
    rc = cli.main(["compile-kfp", "--image", "i", "--output-root", "gs://b/r", "--data-root",
                   "gs://b/d", "--output", str(tmp_path / "p.json")])
    assert rc == 2
    assert "--num-classes" in capsys.readouterr().err


GATE = """metrics_specs { metrics { class_name: "SparseCategoricalAccuracy" threshold {
  change_threshold { direction: HIGHER_IS_BETTER absolute { value: -0.005 } } } } }
slicing_specs {} slicing_specs { feature_keys: "label" }"""


def test_eval_config_file_reaches_the_evaluator_and_conflicts_are_refused(tmp_path, capsys):
    gate_file = tmp_path / "gate.pbtxt"
    gate_file.write_text(GATE)
    base = ["compile-kfp", "--dataset", "digits", "--image", "i", "--output-root", "gs://b/r",
            "--data-root", "gs://b/d", "--output", str(tmp_path / "p.json")]
    assert cli.main(base + ["--eval-config", str(gate_file)]) == 0
    with open(tmp_path / "p.json") as f:
        task = json.load(f)["pipelineSpec"]["root"]["dag"]["tasks"]["QuantEvaluator"]
    from tfx_qat.quant_lib.evaluation import gate  # the executor parses what the spec carries
    sent = gate.parse_eval_config(_const(task, "eval_config"))
    metric = sent.metrics_specs[0].metrics[0]
    assert metric.class_name == "SparseCategoricalAccuracy"
    assert metric.threshold.change_threshold.absolute.value == -0.005
    assert list(sent.slicing_specs[1].feature_keys) == ["label"]
    # The gate is set in one place; a broken file is named.
    assert cli.main(base + ["--eval-config", str(gate_file), "--max-accuracy-drop-pt", "0.5"]) == 2
    assert "also sets ['max_accuracy_drop_pt']" in capsys.readouterr().err
    bad = tmp_path / "bad.pbtxt"
    bad.write_text("metrics_specs { nonsense: 1 }")
    assert cli.main(base + ["--eval-config", str(bad)]) == 2
    assert f"--eval-config {bad}: eval_config: not a tfma.EvalConfig" in capsys.readouterr().err


def test_build_pipeline_gives_other_orchestrators_the_cli_pipeline(tmp_path, capsys):
    """What the Airflow DAG schedules: the pipeline a CLI command line defines, not run; bad
    settings are refused before anything is built, naming the flag or command."""
    from tfx_qat.quant_lib.config import ConfigError
    built = cli.build_pipeline(["run", "--dataset", "digits", "--output-root", str(tmp_path),
                                "--max-accuracy-drop-pt", "1.5", "--qat-epochs", "3"])
    ids = [c.id for c in built.pipeline.components]
    assert ids[-4:] == ["QuantizeTrainer", "IntegerExporter", "QuantEvaluator", "Pusher"]
    by_id = {c.id: c for c in built.pipeline.components}
    assert json.loads(by_id["QuantEvaluator"].exec_properties["config"])[
        "max_accuracy_drop_pt"] == 1.5
    assert built.output_root == str(tmp_path)
    assert built.metadata_path == str(tmp_path / "metadata.sqlite")
    laid = {p: p.stat().st_mtime_ns for p in (tmp_path / "data").rglob("*") if p.is_file()}
    assert laid
    cli.build_pipeline(["run", "--dataset", "digits", "--output-root", str(tmp_path)],
                       reuse_data=True)  # a DAG file parsed again: data laid once
    assert {p: p.stat().st_mtime_ns for p in laid} == laid
    with pytest.raises(ConfigError, match="max_accuracy_drop_pt"):
        cli.build_pipeline(["run", "--dataset", "digits", "--output-root", str(tmp_path),
                            "--max-accuracy-drop-pt", "-1"])
    with pytest.raises(ConfigError, match="'lineage' does not define a pipeline"):
        cli.build_pipeline(["lineage", str(tmp_path)])
    with pytest.raises(ConfigError, match="not a valid tfx-qat command line"):
        cli.build_pipeline(["run", "--no-such-flag"])
