"""Edge TPU: compiler-output parser on the real outputs in tests/fixtures/edgetpu_logs/, the static
analyzer on real converted models, and the compiler runner's failure modes."""
import os
import stat

import numpy as np
import pytest
import tf_keras as keras

from tfx_qat.quant_lib.qat import plan
from tfx_qat.quant_lib.tflite import convert, edgetpu, edgetpu_log, validate

LOGS = os.path.join(os.path.dirname(__file__), "fixtures", "edgetpu_logs")  # SOURCES.md there
MiB, KiB = 1024 ** 2, 1024


def _log(name):
    with open(os.path.join(LOGS, name), encoding="utf-8") as f:
        return edgetpu_log.parse(f.read())


def test_full_mapping_log_file():
    p = _log("01_full_mapping_edgetpu_log_file.txt")
    assert p.version == "16.0.384591198" and p.succeeded is None
    assert p.models[0].input_model == "yolov8n_saved_model/yolov8n_full_integer_quant.tflite"
    assert p.models[0].output_model.endswith("_edgetpu.tflite")
    assert len(p.ops) == 14 and all(r.mapped for r in p.ops)
    assert p.table_ops_mapped == 257 and p.table_ops_unmapped == 0
    assert {r.operator: r.count for r in p.ops}["CONV_2D"] == 64


def test_partial_table_stdout():
    p = _log("02_partial_table_stdout.txt")
    assert p.version == "15.0.340273435" and p.succeeded is True and p.compile_ms == 93
    m = p.models[0]
    assert m.input_size_bytes == round(7.39 * MiB) and m.output_size_bytes == round(7.34 * MiB)
    assert m.on_chip_used_bytes == 0 and m.on_chip_remaining_bytes == round(8.05 * MiB)
    assert m.off_chip_used_bytes == 0 and m.edgetpu_subgraphs == 1
    assert (m.total_ops, m.ops_on_tpu, m.ops_on_cpu) == (294, 1, 293)
    assert m.operation_log == "/home/yolov5/yolov5s_int8_edgetpu.log"
    # The table agrees with the summary lines.
    assert (p.table_ops_mapped, p.table_ops_unmapped) == (1, 293)
    statuses = p.status_counts()
    assert len(statuses) == 6 and statuses["Operation version not supported"] == 2
    assert statuses["Only Strided-Slice with unitary strides supported"] == 4


def test_zero_mapped_excerpt_without_header():
    p = _log("03_zero_mapped_stdout_excerpt.txt")
    assert p.version is None and p.succeeded is True
    assert (p.models[0].ops_on_tpu, p.models[0].ops_on_cpu) == (0, 2)
    assert [(r.operator, r.count, r.mapped) for r in p.ops] == [("MUL", 1, False),
                                                                ("SPLIT", 1, False)]


def test_multi_subgraph_stdout():
    p = _log("04_multi_subgraph_table_stdout.txt")
    assert p.succeeded is True and p.compile_ms == 3173 and p.timeout_s == 180
    m = p.models[0]
    assert m.edgetpu_subgraphs == 2 and (m.total_ops, m.ops_on_tpu, m.ops_on_cpu) == (294, 289, 5)
    assert m.on_chip_used_bytes == round(6.08 * MiB) and m.on_chip_remaining_bytes == 0
    assert m.off_chip_used_bytes == round(1.70 * MiB)
    assert (p.table_ops_mapped, p.table_ops_unmapped) == (289, 5)
    quantize = [(r.count, r.mapped) for r in p.ops if r.operator == "QUANTIZE"]
    assert sorted(quantize) == [(2, False), (24, True)]


def test_error_model_not_parsed():
    p = _log("05_error_model_not_parsed_stdout.txt")
    assert p.version == "16.0.384591198" and p.succeeded is False and not p.models
    assert any("builtin opcode 'QUANTIZE' version '3'" in e for e in p.errors)
    assert "Invalid model: /mnt/e/models/quantized_model.tflite" in p.errors
    assert "Model could not be parsed" in p.errors


def test_error_compilation_failed():
    p = _log("06_error_compilation_failed_stdout.txt")
    assert p.succeeded is False and p.timeout_s == 180 and not p.ops
    assert "ERROR: Encountered unresolved custom op: Atan." in p.errors
    assert any(e.startswith("Compilation failed: Model failed in Tflite interpreter")
               for e in p.errors)


def test_mixed_status_log_file():
    p = _log("07_mixed_status_edgetpu_log_file.txt")
    assert (p.table_ops_mapped, p.table_ops_unmapped) == (257, 2)
    unmapped = {r.operator: r.status for r in p.ops if not r.mapped}
    assert unmapped == {
        "DEQUANTIZE": "Operation is working on an unsupported data type",
        "QUANTIZE": "Operation is otherwise supported, but not mapped due to some unspecified "
                    "limitation"}


def test_cocompiled_models_each_get_a_block():
    p = _log("08_cocompile_two_models_stdout.txt")
    assert p.succeeded is True and p.compile_ms == 1717 and len(p.models) == 2
    lane, det = p.models
    assert lane.input_model == "lane_navigation/model/lane_navigation_w_pretrain_final.tflite"
    assert lane.input_size_bytes == round(258.55 * KiB)
    assert lane.on_chip_used_bytes == round(322.25 * KiB)
    assert (lane.total_ops, lane.ops_on_tpu, lane.ops_on_cpu) == (12, 12, 0)  # fully mapped
    assert (det.total_ops, det.ops_on_tpu, det.ops_on_cpu) == (267, 264, 3)
    assert lane.on_chip_remaining_bytes == det.on_chip_remaining_bytes == round(2.98 * MiB)


def test_every_fixture_log_parses_without_error():
    names = sorted(n for n in os.listdir(LOGS) if n[:2].isdigit())
    assert len(names) >= 8
    for n in names:
        p = _log(n)
        assert p.ops or p.models or p.errors, n


def test_parser_tolerates_crlf():
    p = _log("02_partial_table_stdout.txt")
    with open(os.path.join(LOGS, "02_partial_table_stdout.txt")) as f:
        crlf = edgetpu_log.parse(f.read().replace("\n", "\r\n"))
    assert crlf.to_dict() == p.to_dict()


# --- static analyzer on real converted models ---

def _data(shape=(8, 8, 1), n=64):
    return np.random.RandomState(0).uniform(0, 1, size=(n,) + shape).astype(np.float32)


def _conv_net(mid_layer=None):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    if mid_layer is not None:
        x = mid_layer(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(4)(x))


def test_analyzer_predicts_full_mapping_for_static_int8_qat_model():
    x = _data()
    model = convert.convert_int8(plan.quantize(_conv_net()), x)
    pred = edgetpu.analyze(model)
    assert pred.first_unmapped is None
    assert pred.predicted_on_tpu == len(pred.ops) >= 4
    assert "| CONV_2D |" in pred.to_markdown().replace(" 0 | CONV_2D", " | CONV_2D")


def test_analyzer_flags_dynamic_batch():
    model = convert.convert_int8(plan.quantize(_conv_net()), _data(), static_batch=None)
    first = edgetpu.analyze(model).first_unmapped
    assert first is not None and first.index == 0
    assert any("dynamic shape" in r for r in first.reasons)


def test_analyzer_splits_at_first_unsupported_op():
    # LEAKY_RELU has an int8 TFLite kernel but is not an Edge TPU op: the graph splits there.
    float_model = _conv_net(keras.layers.LeakyReLU())
    model = convert.convert_int8(float_model, _data())  # post-training quantization
    validate.validate_integer(model)  # it is a valid full-integer model...
    pred = edgetpu.analyze(model)  # ...that the Edge TPU cannot run whole
    first = pred.first_unmapped
    assert first.op == "LEAKY_RELU" and first.reasons == ["operation not supported by the Edge TPU"]
    assert all(v.predicted_on_tpu for v in pred.ops[:first.index])
    assert not any(v.predicted_on_tpu for v in pred.ops[first.index:])
    assert pred.predicted_on_cpu == len(pred.ops) - first.index


def test_analyzer_flags_float_models():
    pred = edgetpu.analyze(convert.convert_float(_conv_net()))
    assert pred.predicted_on_tpu == 0
    assert any("FLOAT32" in r for r in pred.ops[0].reasons)


@pytest.mark.parametrize("mutate", [
    lambda b: b[:len(b) // 2],
    lambda b: b[:100],
    lambda b: b[:6],
    lambda b: b"PK\x03\x04" + b[4:],
    lambda b: b"",
])
def test_malformed_tflite_gets_a_clear_error_not_a_crash(mutate):
    good = convert.convert_float(_conv_net())
    with pytest.raises(edgetpu.AnalyzerError, match="TFLite"):
        edgetpu.analyze(mutate(good))


# --- compiler runner ---

def test_missing_compiler_is_not_available(tmp_path):
    r = edgetpu.compile_model(str(tmp_path / "m.tflite"), str(tmp_path / "out"),
                              compiler=str(tmp_path / "no_such_compiler"))
    assert r.status == "not_available" and "ExportConfig.edgetpu_compiler" in r.message


def _script(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_compiler_that_hangs_times_out(tmp_path):
    exe = _script(tmp_path / "hang", "sleep 30\n")
    r = edgetpu.compile_model(str(tmp_path / "m.tflite"), str(tmp_path / "out"), exe, timeout_s=1)
    assert r.status == "timeout" and "within 1s" in r.message


def test_compiler_that_crashes_is_failed_with_its_error(tmp_path):
    # A stand-in executable for the fault case only, printing a compiler-style failure.
    (tmp_path / "out.txt").write_text(
        "Edge TPU Compiler version 16.0.384591198\n"
        "ERROR: Encountered unresolved custom op: Atan.\n"
        "Compilation failed: Model failed in Tflite interpreter.\n")
    exe = _script(tmp_path / "crash", f"cat {tmp_path / 'out.txt'}\nexit 1\n")
    r = edgetpu.compile_model(str(tmp_path / "m.tflite"), str(tmp_path / "out"), exe)
    assert r.status == "failed" and "unresolved custom op: Atan" in r.message
    assert r.parsed.succeeded is False
