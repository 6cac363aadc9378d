import pytest

from tfx_qat.quant_lib.config import (ConfigError, DataSpec, EvalConfig, ExportConfig,
                               QuantizationConfig, Threshold)


@pytest.mark.parametrize("cfg", [
    QuantizationConfig(data=DataSpec(image_shape=(8, 8, 1)), epochs=3, learning_rate=5e-4),
    ExportConfig(inference_input_type="uint8", representative_examples=17),
    ExportConfig(labels=tuple("abcdefghij"), model_name="m", description="d"),
    EvalConfig(max_accuracy_drop_pt=0.25, min_int8_accuracy=0.5, eval_split="test"),
    EvalConfig(slicing_features=("label",), thresholds=(
        Threshold(metric="top_k_accuracy", slice=(("label", "*"),), max_relative_drop=0.02),
        Threshold(min_value=0.8))),
])
def test_json_round_trip(cfg):
    back = type(cfg).from_json(cfg.to_json())
    assert back == cfg
    assert isinstance(back.data, DataSpec) and isinstance(back.data.image_shape, tuple)


@pytest.mark.parametrize("make, field", [
    (lambda: QuantizationConfig(epochs=0), "QuantizationConfig.epochs"),
    (lambda: QuantizationConfig(learning_rate=2.0), "QuantizationConfig.learning_rate"),
    (lambda: ExportConfig(inference_input_type="float16"), "ExportConfig.inference_input_type"),
    (lambda: ExportConfig(activations="int16x8"), "ExportConfig.inference_input_type"),
    (lambda: ExportConfig(activations="int4"), "ExportConfig.activations"),
    (lambda: ExportConfig(edgetpu_timeout_s=0), "ExportConfig.edgetpu_timeout_s"),
    (lambda: ExportConfig(require_edgetpu=True, edgetpu=False), "ExportConfig.require_edgetpu"),
    (lambda: ExportConfig(representative_examples=0), "ExportConfig.representative_examples"),
    (lambda: ExportConfig(labels=("a", "b")), "ExportConfig.labels"),  # DataSpec has 10 classes
    (lambda: ExportConfig(labels=("a",) * 10), "ExportConfig.labels"),
    (lambda: ExportConfig(labels=("a\nb",) + tuple("cdefghijk")), "ExportConfig.labels"),
    (lambda: EvalConfig(max_accuracy_drop_pt=-1), "EvalConfig.max_accuracy_drop_pt"),
    (lambda: EvalConfig(min_int8_accuracy=85), "EvalConfig.min_int8_accuracy"),
    (lambda: DataSpec(image_shape=(28, 28)), "DataSpec.image_shape"),
    (lambda: DataSpec(num_classes=1), "DataSpec.num_classes"),
    (lambda: DataSpec(image_dtype="float16"), "DataSpec.image_dtype"),
    (lambda: Threshold(metric="f1", min_value=0.5), "Threshold.metric"),
    (lambda: Threshold(), "Threshold.max_drop_pt"),
    (lambda: EvalConfig(thresholds=(Threshold(slice=(("label", "3"),), min_value=0.5),)),
     "EvalConfig.thresholds"),
    (lambda: EvalConfig(top_k=10), "EvalConfig.top_k"),
])
def test_invalid_values_name_the_field(make, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        make()


def test_unknown_field_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown field.*max_drop.*valid fields"):
        EvalConfig.from_json('{"max_drop": 1.0}')


def test_bad_json_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid JSON"):
        ExportConfig.from_json("{oops")
