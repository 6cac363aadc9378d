"""The accuracy-aware search through the whole pipeline (LocalDagRunner, CLI): 2-bit weights on
digits miss the budget, the search raises the most sensitive layers to 8 bits, the exported model
carries exactly those layers at 8 bits, the run report shows the sensitivity ranking and the
trials, and lineage (MLMD) lists the trials of the pushed model."""
import json
import os

import pytest
from ml_metadata.metadata_store import metadata_store
from tfx.orchestration import metadata

from tfx_qat.components.utils import read_record
from tfx_qat.pipelines import cli, data
from tfx_qat.quant_lib.artifacts import records

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("search_run")
    assert cli.main(["run", "--dataset", "digits", "--output-root", str(root), "--float-epochs",
                     "15", "--width", "16", "--qat-scheme", "n_bit", "--weight-bits", "2",
                     "--qat-epochs", "2", "--qat-learning-rate", "3e-4",
                     "--search-budget-pt", "5", "--search-move", "int8_weights",
                     "--search-max-trials", "6", "--max-accuracy-drop-pt", "8", "--no-cache"]) == 0
    with open(root / "summary.json") as f:
        return root, json.load(f)


def _qat_report(summary):
    with open(summary["qat"]["report"]) as f:
        return json.load(f)


def test_search_raises_the_most_sensitive_layers_until_within_budget(run):
    root, summary = run
    found = _qat_report(summary)["search"]
    trials, ranked = found["trials"], [s["name"] for s in found["sensitivity"]]
    assert trials[0]["move"] == "as configured" and not trials[0]["within_budget"], trials[0]
    assert found["status"] == "within_budget", found["reason"]
    first = next(t for t in trials if t["within_budget"])
    chosen = trials[found["chosen"]]
    # The kept model is within budget and no larger than the first within it; only refine
    # steps (bisecting back towards fewer 8-bit layers) follow that first one.
    assert chosen["within_budget"] and chosen["drop_pt"] <= 5
    assert chosen["int8_bytes"] <= first["int8_bytes"]
    assert all(t["move"] == "int8_weights (refine)" for t in trials[first["index"] + 1:])
    # Each trial raises the top-k of the sensitivity ranking, k = 1, 2, 4...; sizes grow with k.
    for t in trials[1:]:
        names = t["config"]["int8_weight_names"]
        assert names == ranked[:len(names)], (names, ranked)
    sizes = [t["int8_bytes"] for t in trials[:first["index"] + 1]]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    # The validation split was carved from train and is not the gate's split.
    assert found["validation_split"] == "validation" and found["examples"] > 50
    assert summary["eval_examples"] == len(data.load_digits()[3])


def test_exported_model_is_the_chosen_mix(run):
    root, summary = run
    found = _qat_report(summary)["search"]
    chosen = found["trials"][found["chosen"]]
    from tfx_qat.quant_lib.tflite import flatbuffer
    path = os.path.join(summary["artifacts"]["int8_model"], "Format-Serving", "tflite")
    data_bytes = open(path, "rb").read()
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(
        os.path.join(root, "metadata.sqlite")))
    [art] = [a for a in store.get_artifacts_by_type("Model")
             if a.uri == summary["artifacts"]["int8_model"]]
    packed = read_record(art, records.Int8Model).metadata_bytes  # metadata + labels.txt inside
    assert 0 < packed < 4096 and len(data_bytes) - packed == chosen["int8_bytes"]
    eight = set(chosen["config"]["int8_weight_names"])
    types = flatbuffer.weight_types(data_bytes)  # 2-bit weights are stored as INT4 tensors
    assert set(types) == {s["name"] for s in found["sensitivity"]}
    assert {k for k, v in types.items() if v == "INT8"} == eight, types
    assert {v for k, v in types.items() if k not in eight} == {"INT4"}, types


def test_report_and_lineage_show_the_search(run, capsys):
    root, summary = run
    html = open(summary["report"]).read()
    assert 'id="search"' in html and "Accuracy-aware search" in html
    assert html.count("data:image/png") >= 4  # confusion, per-class, sensitivity, size
    found = _qat_report(summary)["search"]
    assert found["sensitivity"][0]["name"] in html
    assert summary["qat"]["search"]["status"] == "within_budget"
    assert summary["blessed"] and summary["pushed_path"]
    assert cli.main(["lineage", str(root)]) == 0
    out = capsys.readouterr().out
    assert "search (within_budget" in out
    for t in found["trials"]:
        assert f"trial {t['index']} {t['move']}" in out
