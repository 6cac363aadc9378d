"""Component wiring: constructors validate, configs travel as one JSON exec property, and the
pipeline connects Pusher to the int8 model and QuantEvaluator's blessing."""
import json

import pytest

from tfx_qat.components import IntegerExporter, QuantEvaluator, QuantizeTrainer, keys
from tfx_qat.pipelines.pipeline import PipelineSettings, create_pipeline
from tfx_qat.quant_lib.config import DataSpec, EvalConfig, ExportConfig, QuantizationConfig

SPEC = DataSpec(image_shape=(8, 8, 1))


@pytest.fixture
def pipeline(tmp_path):
    s = PipelineSettings(name="wiring", output_root=str(tmp_path), data_root=str(tmp_path / "d"),
                         data=SPEC, eval=EvalConfig(data=SPEC, max_accuracy_drop_pt=0.5,
                                                    max_regression_vs_baseline_pt=0.3))
    return s, create_pipeline(s)


def test_pipeline_order_and_wiring(pipeline):
    s, p = pipeline
    ids = [c.id for c in p.components]
    assert "latest_blessed_int8_resolver" in ids  # no upstream: topological order puts it early
    assert [i for i in ids if i != "latest_blessed_int8_resolver"] == [
        "ImportExampleGen", "StatisticsGen", "SchemaGen", "Trainer", "QuantizeTrainer",
        "IntegerExporter", "QuantEvaluator", "Pusher"]
    by_id = {c.id: c for c in p.components}
    pusher = by_id["Pusher"]
    assert pusher.inputs["model"].producer_component_id == "IntegerExporter"
    assert pusher.inputs["model_blessing"].producer_component_id == "QuantEvaluator"
    ev = by_id["QuantEvaluator"]
    assert ev.inputs[keys.MODEL].producer_component_id == "Trainer"
    assert ev.inputs[keys.QUANTIZED_MODEL].producer_component_id == "IntegerExporter"
    assert EvalConfig.from_json(ev.exec_properties[keys.CONFIG]) == s.eval
    assert ev.inputs[keys.BASELINE_MODEL].producer_component_id == "latest_blessed_int8_resolver"
    assert by_id["QuantizeTrainer"].inputs[keys.BASE_MODEL].producer_component_id == "Trainer"
    assert type(pusher).__name__ == "VerifiedPusher"


def test_baseline_resolver_is_wired_only_for_a_regression_gate(tmp_path):
    s = PipelineSettings(name="nobase", output_root=str(tmp_path), data_root=str(tmp_path / "d"),
                         data=SPEC)
    p = create_pipeline(s)
    ids = [c.id for c in p.components]
    assert "latest_blessed_int8_resolver" not in ids
    ev = next(c for c in p.components if c.id == "QuantEvaluator")
    assert keys.BASELINE_MODEL not in ev.inputs


def test_constructors_reject_untyped_configs():
    from tfx.types import channel_utils, standard_artifacts
    ex = channel_utils.as_channel([standard_artifacts.Examples()])
    m = channel_utils.as_channel([standard_artifacts.Model()])
    with pytest.raises(TypeError, match="QuantizationConfig"):
        QuantizeTrainer(examples=ex, base_model=m, config={"epochs": 1})
    with pytest.raises(TypeError, match="ExportConfig"):
        IntegerExporter(model=m, examples=ex, config=QuantizationConfig())
    with pytest.raises(TypeError, match="EvalConfig"):
        QuantEvaluator(examples=ex, model=m, quantized_model=m, config=ExportConfig())


def test_settings_reject_mismatched_data_specs(tmp_path):
    with pytest.raises(ValueError, match="eval.data differs"):
        PipelineSettings(name="x", output_root=str(tmp_path), data_root=str(tmp_path), data=SPEC,
                         eval=EvalConfig())


def test_quantize_trainer_needs_a_float_model_source():
    from tfx.types import channel_utils, standard_artifacts
    ex = channel_utils.as_channel([standard_artifacts.Examples()])
    with pytest.raises(ValueError, match="base_model=.*module_file=/run_fn="):
        QuantizeTrainer(examples=ex)
    with pytest.raises(ValueError, match="not both"):
        QuantizeTrainer(examples=ex, module_file="m.py", run_fn="a.b")
    c = QuantizeTrainer(examples=ex, run_fn="tfx_qat.pipelines.modules.cnn_trainer.run_fn",
                        custom_config={"epochs": 2})
    assert c.exec_properties["run_fn"] == "tfx_qat.pipelines.modules.cnn_trainer.run_fn"
    assert json.loads(c.exec_properties["custom_config"]) == {"epochs": 2}
