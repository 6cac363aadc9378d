"""Accuracy-aware quantization: mixed 4/8-bit weights per layer, float islands for a CPU target,
per-layer sensitivity and the search (QuantizeTrainer -> IntegerExporter executors, real TFMOT,
TFLite and MLMD artifacts on sklearn's digits)."""
import dataclasses
import json
import os

import numpy as np
import pytest
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from tfx_qat.components import keys
from tfx_qat.components.integer_exporter.executor import Executor as ExporterExecutor
from tfx_qat.components.quantize_trainer.executor import Executor as QuantizeExecutor
from tfx_qat.components.utils import read_record
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.config import ConfigError, ExportConfig, QuantizationConfig, SearchConfig
from tfx_qat.quant_lib.qat import keras2, plan, saving, train
from tfx_qat.quant_lib.search import search, sensitivity
from tfx_qat.quant_lib.tflite import convert, flatbuffer, interpreter, validate
from conftest import clear_disagreements, make_examples_artifact


def test_search_config_refuses_what_cannot_work():
    with pytest.raises(ConfigError, match=r"SearchConfig.moves: 'float_fallback'.*Edge TPU"):
        SearchConfig(target="edgetpu", moves=("int8_weights", "float_fallback"))
    assert SearchConfig(target="edgetpu").moves == ("int8_weights", "per_channel", "more_epochs")
    assert SearchConfig().moves[-1] == "float_fallback"
    with pytest.raises(ConfigError, match="validation_split must differ from train_split"):
        QuantizationConfig(search=SearchConfig(validation_split="train"))
    with pytest.raises(ConfigError, match="int8_weight_names.*scheme='n_bit'"):
        QuantizationConfig(int8_weight_names=("logits",))
    cfg = QuantizationConfig(search=SearchConfig(max_trials=3), float_fallback_names=("x",))
    assert QuantizationConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match=r"moves \['int8_weights', 'per_channel'\] change "
                                          "nothing here"):
        QuantizationConfig(search=SearchConfig(moves=("int8_weights", "per_channel")))


def test_candidates_cheapest_first_each_from_the_configured_model():
    """The moves that apply, in the configured order, the top 1, 2, 4... ranked layers first;
    per-channel only where per-tensor was asked; float fallback only for a CPU target."""
    ranked = ["a", "b", "c", "d", "e"]
    cfg = QuantizationConfig(scheme="n_bit", weight_bits=4, per_tensor=True,
                             int8_weight_names=("c",), search=SearchConfig())
    got = [(m, changes) for m, _, changes, _ in search.candidates(cfg, ranked)]
    assert got == [
        ("as configured", {}),
        ("int8_weights", {"int8_weight_names": ("c", "a")}),
        ("int8_weights", {"int8_weight_names": ("c", "a", "b")}),
        ("int8_weights", {"int8_weight_names": ("c", "a", "b", "d", "e")}),
        ("per_channel", {"per_tensor": False}),
        ("more_epochs", {"epochs": 2}),
        ("float_fallback", {"float_fallback_names": ("a",)}),
        ("float_fallback", {"float_fallback_names": ("a", "b")}),
        ("float_fallback", {"float_fallback_names": ("a", "b", "c", "d")}),
        ("float_fallback", {"float_fallback_names": ("a", "b", "c", "d", "e")})]
    etpu = QuantizationConfig(search=SearchConfig(target="edgetpu", moves=("more_epochs",)))
    assert [m for m, _, _, _ in search.candidates(etpu, ranked)] == ["as configured", "more_epochs"]


def test_mixed_precision_keeps_named_layers_at_8_bits(float_model_artifact, digits_arrays):
    """int8_weight_names under the 4-bit scheme: those layers' weights are INT8 in the TFLite
    file, the others INT4 (Dense included: TFMOT's n-bit registry shares its bit widths between
    instances, so a second registry would silently turn them all to one width)."""
    (xt, _), _ = digits_arrays
    model = saving.load_model(path_utils.serving_model_dir(float_model_artifact.uri))
    sizes = {}
    for names in ((), ("block4_pw", "logits")):
        cfg = QuantizationConfig(scheme="n_bit", weight_bits=4, int8_weight_names=names)
        q = plan.quantize(sensitivity.fresh_copy(model), cfg)
        train.calibrate_ranges(q, [xt[:64]])
        data = convert.convert_int8(q, xt[:100])
        types = flatbuffer.weight_types(data)
        assert {k for k, v in types.items() if v == "INT8"} == set(names), types
        assert {v for k, v in types.items() if k not in names} == {"INT4"}, types
        sizes[names] = len(data)
    full8 = len(convert.convert_int8(plan.quantize(sensitivity.fresh_copy(model)), xt[:100]))
    assert sizes[()] < sizes[("block4_pw", "logits")] < full8, (sizes, full8)
    with pytest.raises(keras2.QuantizationError, match="int8_weight_names names.*'nope'"):
        plan.quantize(model, QuantizationConfig(scheme="n_bit", weight_bits=4,
                                               int8_weight_names=("nope",)))


@pytest.fixture(scope="module")
def hard_model_setup(digits_dir, tmp_path_factory):
    """A digits MLP whose hidden layer has one outlier weight per unit on a pixel that is 0 in
    every image: the float function is unchanged, but the weight scale of each unit becomes so
    coarse that int8 rounds its real weights to 0. Examples with train / validation / eval."""
    import tf_keras as keras
    from tfx_qat.pipelines import data
    from tfx_qat.quant_lib.examples.data import load_arrays
    d, spec = digits_dir
    (xt, yt), (xe, ye) = (load_arrays(os.path.join(d, s), spec) for s in ("train", "eval"))
    root = str(tmp_path_factory.mktemp("hard_data"))
    data.write_split(root, "train", xt[:1000], yt[:1000], spec)
    data.write_split(root, "validation", xt[1000:], yt[1000:], spec)
    data.write_split(root, "eval", xe, ye, spec)
    examples = make_examples_artifact(str(tmp_path_factory.mktemp("hard_examples")), root,
                                      ("train", "validation", "eval"))
    flat = xt.reshape(len(xt), -1)
    dead = int(np.where(flat.max(0) == 0)[0][0])
    assert flat[:, dead].max() == 0 and xe.reshape(len(xe), -1)[:, dead].max() == 0
    keras.utils.set_random_seed(0)
    inputs = keras.Input(spec.image_shape, name=spec.image_key)
    h = keras.layers.Dense(64, activation="relu", name="hidden")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(h))
    train.compile_for_training(model, 1e-2)
    model.fit(xt[:1000], yt[:1000], batch_size=64, epochs=20, verbose=0)
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[dead, :] = 500.0
    model.get_layer("hidden").set_weights([kernel, bias])
    art = standard_artifacts.Model()
    art.uri = str(tmp_path_factory.mktemp("hard_float"))
    model.save(path_utils.serving_model_dir(art.uri), save_format="tf", include_optimizer=False)
    float_acc = float(np.mean(np.argmax(model.predict(xe, verbose=0), -1) == ye))
    return examples, art, spec, (xe, ye), float_acc


def _run_qat(setup, tmp_path, search_cfg):
    examples, base, spec, _, _ = setup
    out = standard_artifacts.Model()
    out.uri = str(tmp_path / "qat")
    cfg = QuantizationConfig(data=spec, epochs=1, learning_rate=1e-4, search=search_cfg)
    QuantizeExecutor().Do({keys.EXAMPLES: [examples], keys.BASE_MODEL: [base]},
                          {keys.QAT_MODEL: [out]}, {keys.CONFIG: cfg.to_json()})
    with open(os.path.join(out.uri, keys.QAT_REPORT_FILE)) as f:
        return out, json.load(f)["search"]


def _export(setup, qat_out, tmp_path, **kw):
    examples, base, spec, _, _ = setup
    out = standard_artifacts.Model()
    out.uri = str(tmp_path / "int8")
    ExporterExecutor().Do({keys.EXAMPLES: [examples], keys.MODEL: [qat_out],
                           keys.BASE_MODEL: [base]}, {keys.QUANTIZED_MODEL: [out]},
                          {keys.CONFIG: ExportConfig(data=spec, **{"edgetpu": False, **kw}).to_json()})
    return out


def test_cpu_search_keeps_the_hard_layer_float_and_the_edge_tpu_refuses(hard_model_setup,
                                                                        tmp_path):
    examples, base, spec, (xe, ye), float_acc = hard_model_setup
    qat_out, found = _run_qat(hard_model_setup, tmp_path, SearchConfig(max_accuracy_drop_pt=1.0))
    trials = found["trials"]
    # PTQ and full int8 QAT miss the budget by far; the sensitivity ranks the hard layer first.
    assert trials[0]["move"] == "ptq" and trials[0]["drop_pt"] > 20, trials[0]
    assert trials[1]["move"] == "as configured" and trials[1]["drop_pt"] > 20, trials[1]
    assert found["sensitivity"][0]["name"] == "hidden", found["sensitivity"]
    assert found["sensitivity"][0]["drop_pt"] > 20 > found["sensitivity"][1]["drop_pt"]
    chosen = trials[found["chosen"]]
    assert found["status"] == search.WITHIN and chosen["within_budget"]
    assert chosen["config"] == {"float_fallback_names": ["hidden"]}, chosen
    assert chosen["drop_pt"] <= 1.0 and chosen["float_ops"] == 1
    assert all(not t["within_budget"] for t in trials[:-1]) and chosen is trials[-1]
    rec = read_record(qat_out, records.QatModel)
    assert rec.float_fallback_layers == ["hidden"] and rec.search_status == search.WITHIN
    assert len(rec.search_trial_table) == len(trials)

    # The exporter accepts the listed island (and nothing else float), parity included, and the
    # int8 model holds the float accuracy on the eval split the search never saw.
    out = _export(hard_model_setup, qat_out, tmp_path)
    data = open(os.path.join(path_utils.serving_model_dir(out.uri), keys.TFLITE_FILE), "rb").read()
    report = validate.validate_integer(data, float_layers=["hidden"])
    assert report.float_ops == 1 and read_record(out, records.Int8Model).float_island_ops == 1
    with pytest.raises(flatbuffer.ExportValidationError, match="FULLY_CONNECTED runs on float"):
        validate.validate_integer(data)
    int8_acc = float(np.mean(np.argmax(interpreter.TFLiteClassifier(data).predict(
        {spec.image_key: xe}), -1) == ye))
    # Within the 1 pt budget up to noise: the eval split is not the validation split the search
    # measured on (a collapse, the hard layer quantized, loses tens of points).
    assert float_acc - int8_acc <= 0.03, (float_acc, int8_acc)

    # For the Edge TPU the same model is refused with the reason, and no model is written.
    with pytest.raises(ValueError, match=r"keeps layers \['hidden'\] float.*Edge TPU, which runs "
                                         r"int8 ops only"):
        _export(hard_model_setup, qat_out, tmp_path / "etpu", edgetpu=True, require_edgetpu=True)
    assert not os.path.exists(os.path.join(path_utils.serving_model_dir(
        str(tmp_path / "etpu" / "int8")), keys.TFLITE_FILE))


def test_no_candidate_within_budget_stops_the_export(hard_model_setup, tmp_path):
    """For the Edge TPU the float move is not allowed, and nothing else fixes the hard layer: the
    trials are recorded with what each would cost on the device, the status says so, and
    IntegerExporter refuses to export (so nothing can be blessed or pushed)."""
    qat_out, found = _run_qat(hard_model_setup, tmp_path, SearchConfig(
        target="edgetpu", moves=("more_epochs",), max_trials=2, ptq=False))
    assert found["status"] == search.NO_CANDIDATE and len(found["trials"]) == 2
    assert [t["move"] for t in found["trials"]] == ["as configured", "more_epochs"]
    for t in found["trials"]:  # the analyzer's verdict on each candidate
        assert t["edgetpu"]["ops"] >= 2 and 0 <= t["edgetpu"]["predicted_on_tpu"] <= \
            t["edgetpu"]["ops"]
    assert "no candidate within 1.0 pt after 2 trial(s)" in found["reason"]
    with pytest.raises(ValueError, match="found no candidate within its budget"):
        _export(hard_model_setup, qat_out, tmp_path)


def test_missing_validation_split_is_named_before_training(hard_model_setup, tmp_path):
    with pytest.raises(ValueError, match=r"SearchConfig.validation_split='holdout'.*no split"):
        _run_qat(hard_model_setup, tmp_path, SearchConfig(validation_split="holdout"))
    assert not os.path.exists(tmp_path / "qat" / "Format-Serving")


def test_report_section_ranks_layers_and_shows_edge_tpu_cost_per_trial():
    from tfx_qat.quant_lib.reports import report
    trial = dict(index=0, move="as configured", change="-", accuracy=0.5, drop_pt=40.0,
                 int8_bytes=1000, latency_ms=0.1, float_ops=0, within_budget=False, seconds=1.0,
                 config={}, edgetpu={"ops": 5, "predicted_on_tpu": 3,
                                     "first_unmapped": "#3 LOGISTIC"})
    found = {"status": search.NO_CANDIDATE, "reason": "no candidate within 1.0 pt",
             "budget_pt": 1.0, "target": "edgetpu", "validation_split": "validation",
             "examples": 200, "float_accuracy": 0.9, "chosen": 0, "seconds": 3.0,
             "sensitivity": [dict(name="a", cls="Dense", accuracy=0.5, drop_pt=40.0,
                                  output_snr_db=1.0),
                             dict(name="b", cls="Dense", accuracy=0.89, drop_pt=1.0,
                                  output_snr_db=30.0)],
             "trials": [trial]}
    from tfx_qat.quant_lib.artifacts.report_files import SearchReport
    html = report._search(SearchReport.load(found))  # pylint: disable=protected-access
    assert "data:image/png" in html and 'class="bad"' in html
    assert "3/5 (split at #3 LOGISTIC)" in html
    assert html.index("<td class=\"l\">a</td>") < html.index("<td class=\"l\">b</td>")


@pytest.mark.parametrize("names", [("logits",), ("hidden", "logits")])
def test_float_islands_at_the_output_and_around_everything(hard_model_setup, names):
    """The model's output layer can be an island too (its TFLite tensors are named after the
    signature, not the layer), and so can every layer after the input's quantizer; the TFLite
    model then agrees with the QAT Keras model."""
    _, base, spec, (xe, ye), _ = hard_model_setup
    model = saving.load_model(path_utils.serving_model_dir(base.uri))
    q = plan.quantize(sensitivity.fresh_copy(model), QuantizationConfig(float_fallback_names=names))
    train.calibrate_ranges(q, [xe[:128]])
    data = convert.convert_int8(q, xe[:100], float_layers=names)
    assert validate.validate_integer(data, float_layers=names).float_ops == len(names)
    keras_pred = np.argmax(q.predict(xe, verbose=0), -1)
    tfl_pred = np.argmax(interpreter.TFLiteClassifier(data).predict({spec.image_key: xe}), -1)
    assert np.mean(keras_pred == tfl_pred) >= 0.97
    if "hidden" in names:  # the hard layer float: the float model's accuracy is back
        assert np.mean(tfl_pred == ye) > 0.85


def test_paired_drop_interval_and_what_a_split_can_resolve():
    """The drop is measured on the same examples: only the ones the two models disagree on count,
    and the interval never gets finer than one example."""
    f = np.array([True] * 90 + [False] * 10)
    t = f.copy()
    t[:3] = False  # three examples float gets right, the trial wrong
    drop, low, high = sensitivity.paired_drop(f, t)
    assert drop == pytest.approx(3.0) and low < 0 < drop < high  # 3 of 100: not resolved
    assert sensitivity.paired_drop(f, f) == (0.0, -1.0, 1.0)
    t[80:85] = False  # eight examples worse: resolved
    assert sensitivity.paired_drop(f, t)[1] > 0
    # The CLI's digits carve-out (120 examples at ~94 %) cannot resolve a 1 pt budget; the
    # Fashion-MNIST one (5,000 at ~90 %) can.
    assert sensitivity.resolution_pt(120, 0.94) > 4 and sensitivity.resolution_pt(5000, 0.90) < 1.0
    need = sensitivity.examples_needed(1.0, 0.94)
    assert 2000 < need < 2500 and sensitivity.resolution_pt(need, 0.94) <= 1.0


def test_budget_below_resolution_is_refused_in_strict_mode_naming_the_examples_needed(
        hard_model_setup, tmp_path):
    with pytest.raises(sensitivity.SearchError, match=r"SearchConfig.strict=True: the budget of 0.5 pt "
                       r"is below what \d+ 'validation' examples resolve.*needs about [\d,]+ "
                       r"validation examples"):
        _run_qat(hard_model_setup, tmp_path, SearchConfig(max_accuracy_drop_pt=0.5, strict=True))
    assert not os.path.exists(tmp_path / "qat" / "Format-Serving")


def test_a_search_that_ends_with_every_weight_at_8_bits_says_so():
    ranked = [sensitivity.LayerSensitivity(n, "Dense", 0.9, 1.0, 20.0) for n in ("a", "b")]
    cfg = QuantizationConfig(scheme="n_bit", weight_bits=4, search=SearchConfig())
    every = dataclasses.replace(cfg, int8_weight_names=("a", "b"))
    some = dataclasses.replace(cfg, int8_weight_names=("a",))
    assert "every weight layer at 8 bits (the plain int8 model, not 4-bit)" in \
        search._no_mix(every, cfg, ranked)  # pylint: disable=protected-access
    assert search._no_mix(some, cfg, ranked) is None  # pylint: disable=protected-access


@pytest.fixture(scope="module")
def three_hard_layers_setup(hard_model_setup, digits_dir, tmp_path_factory):
    """A digits MLP of five hidden layers, three of them (h0, h2, h3) made impossible to quantize
    without changing the float function: a unit that never fires (bias -1e4) feeds each of them
    with a weight of 500, so every output unit's int8 scale rounds its real weights to 0."""
    import tf_keras as keras
    from tfx_qat.quant_lib.examples.data import load_arrays
    examples, _, spec, _, _ = hard_model_setup
    d, _ = digits_dir
    xt, yt = load_arrays(os.path.join(d, "train"), spec)
    keras.utils.set_random_seed(0)
    inputs = keras.Input(spec.image_shape, name=spec.image_key)
    h = keras.layers.Flatten()(inputs)
    for i in range(5):
        h = keras.layers.Dense(48, activation="relu", name=f"h{i}")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(h))
    train.compile_for_training(model, 1e-2)
    model.fit(xt[:1000], yt[:1000], batch_size=64, epochs=30, verbose=0)
    for hard in (0, 2, 3):  # unit 0 of the layer before never fires; its outgoing weights: 500
        if hard:
            k, b = model.get_layer(f"h{hard - 1}").get_weights()
            b[0] = -1e4
            model.get_layer(f"h{hard - 1}").set_weights([k, b])
            k, b = model.get_layer(f"h{hard}").get_weights()
            k[0, :] = 500.0
        else:  # the first layer: a pixel that is 0 in every image
            flat = xt.reshape(len(xt), -1)
            k, b = model.get_layer("h0").get_weights()
            k[int(np.where(flat.max(0) == 0)[0][0]), :] = 500.0
        model.get_layer(f"h{hard}").set_weights([k, b])
    art = standard_artifacts.Model()
    art.uri = str(tmp_path_factory.mktemp("three_hard_float"))
    model.save(path_utils.serving_model_dir(art.uri), save_format="tf", include_optimizer=False)
    return examples, art, spec, None, None


def test_refinement_steps_back_to_the_smallest_model_within_budget(three_hard_layers_setup,
                                                                   tmp_path):
    """Float fallback of the 1, 2, 4 most sensitive layers: one or two miss the budget, four are
    within it; the search bisects back to three (exactly the hard layers), a smaller model than
    the first within budget, and keeps it; never one outside the budget."""
    _, found = _run_qat(three_hard_layers_setup, tmp_path, SearchConfig(
        max_accuracy_drop_pt=3.0, moves=("float_fallback",), max_trials=7))
    trials, ranked = found["trials"], [s["name"] for s in found["sensitivity"]]
    assert set(ranked[:3]) == {"h0", "h2", "h3"}, found["sensitivity"]
    moves = [(t["move"], len(t["config"].get("float_fallback_names", []))) for t in trials]
    assert moves == [("ptq", 0), ("as configured", 0), ("float_fallback", 1),
                     ("float_fallback", 2), ("float_fallback", 4),
                     ("float_fallback (refine)", 3)], moves
    assert [t["within_budget"] for t in trials] == [False, False, False, False, True, True]
    chosen = trials[found["chosen"]]
    assert chosen is trials[-1] and chosen["drop_pt"] <= 3.0
    assert set(chosen["config"]["float_fallback_names"]) == {"h0", "h2", "h3"}
    assert chosen["int8_bytes"] < trials[4]["int8_bytes"]
    assert "the smallest within budget after refining trial 4" in found["reason"]


@pytest.fixture(scope="module")
def diabetes_setup(tmp_path_factory):
    """scikit-learn's diabetes regression (train / validation / eval) and a float MLP trained
    on it (the tabular pipeline's model and loss)."""
    import tf_keras as keras
    from tfx_qat.pipelines import tabular
    from tfx_qat.pipelines.modules.tabular_trainer import build_model, compile_for
    d = str(tmp_path_factory.mktemp("diabetes"))
    tabular.ingest("diabetes", d, validation_fraction=0.25)
    examples = make_examples_artifact(str(tmp_path_factory.mktemp("diabetes_ex")), d,
                                      ("train", "validation", "eval"))
    names, xt, yt, _, _, label, _ = tabular.load("diabetes")
    xt, yt = xt[:-int(round(len(yt) * 0.25))], yt[:-int(round(len(yt) * 0.25))]
    order = np.argsort(names)
    keras.utils.set_random_seed(0)
    model = build_model(sorted(names), "regression", xt.mean(0)[order], xt.var(0)[order])
    compile_for(model, "regression", 1e-2)
    model.fit({n: xt[:, i:i + 1] for i, n in enumerate(names)}, yt, batch_size=32, epochs=150,
              verbose=0)
    art = standard_artifacts.Model()
    art.uri = str(tmp_path_factory.mktemp("diabetes_float"))
    model.save(path_utils.serving_model_dir(art.uri), save_format="tf")
    return examples, art, label


def test_regression_search_keeps_ptq_when_qat_does_worse(diabetes_setup, tmp_path):
    """The budget of a regression model is its MAE's relative increase; PTQ of the float model
    is the first candidate, and when QAT as configured (here at a learning rate that wrecks the
    fine-tuning) scores worse, the PTQ model is kept, recorded as such and exported."""
    from tfx_qat.quant_lib.config import FeatureSpec
    examples, base, label = diabetes_setup
    spec = FeatureSpec(label_key=label, task="regression")
    out = standard_artifacts.Model()
    out.uri = str(tmp_path / "qat")
    cfg = QuantizationConfig(data=spec, epochs=2, batch_size=32, learning_rate=0.5,
                             search=SearchConfig(max_mae_increase_pct=2.0, moves=("more_epochs",)))
    QuantizeExecutor().Do({keys.EXAMPLES: [examples], keys.BASE_MODEL: [base]},
                          {keys.QAT_MODEL: [out]}, {keys.CONFIG: cfg.to_json()})
    with open(os.path.join(out.uri, keys.QAT_REPORT_FILE)) as f:
        found = json.load(f)["search"]
    trials = found["trials"]
    assert found["metric"] == "mae" and [t["move"] for t in trials] == ["ptq", "as configured"]
    assert trials[0]["within_budget"] and trials[0]["drop_pt"] <= 2.0
    assert trials[1]["drop_pt"] > trials[0]["drop_pt"]
    assert found["chosen"] == 0 and "at least as good as QAT as configured" in found["reason"]
    rec = read_record(out, records.QatModel)
    assert rec.int8_method == "ptq" and rec.search_metric == "mae" and rec.qat_seconds_per_step is None
    # IntegerExporter converts the kept float model post-training, like any int8 model.
    int8 = standard_artifacts.Model()
    int8.uri = str(tmp_path / "int8")
    ExporterExecutor().Do({keys.EXAMPLES: [examples], keys.MODEL: [out], keys.BASE_MODEL: [base]},
                          {keys.QUANTIZED_MODEL: [int8]},
                          {keys.CONFIG: ExportConfig(data=spec, edgetpu=False).to_json()})
    x = read_record(int8, records.Int8Model)
    assert x.integer_validated and x.parity_top1_agreement >= 0.9 and clear_disagreements(
        x.parity_top1_agreement, x.parity_near_ties, x.parity_examples) <= 2
    assert set(flatbuffer.weight_types(open(os.path.join(path_utils.serving_model_dir(int8.uri),
                                                     "tflite"), "rb").read()).values()) == {"INT8"}
