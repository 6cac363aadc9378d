"""Runs compared from MLMD (``tfx_qat.pipelines.experiments``) on one real store: six LocalDagRunner runs
of the image pipeline on scikit-learn's digits (CSV input) with different QAT configurations, one
NOT BLESSED, one failing in IntegerExporter, and a refresh on new data. Also: every property on
every artifact is one its record names (``tfx_qat.quant_lib.artifacts.records``), so writer and reader agree."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from sklearn.datasets import load_digits
from tfx.orchestration import metadata

from tfx_qat.components.utils import mlmd_properties
from conftest import clear_disagreements, render_in_chromium
from tfx_qat.pipelines import cli, experiments
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.tflite import validate

pytestmark = pytest.mark.slow
RUNS = [("default", []), ("per_tensor", ["--per-tensor"]),
        ("more_epochs", ["--qat-epochs", "2", "--qat-learning-rate", "0.0003"]),
        ("not_blessed", ["--min-int8-accuracy", "1.0"]),
        ("fails_export", ["--require-edgetpu"]),
        ("refresh", [])]


def _csv(path, x, y):
    with open(path, "w") as f:
        f.write(",".join(["label"] + [f"p{i}" for i in range(x.shape[1])]) + "\n")
        for xi, yi in zip(x, y):
            f.write(f"{yi}," + ",".join(f"{v:.4f}" for v in xi) + "\n")


@pytest.fixture(scope="module")
def store_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("experiments")
    d = load_digits()
    x, y = d.data / 16.0, d.target
    _csv(tmp / "eval.csv", x[1400:], y[1400:])
    _csv(tmp / "train_week1.csv", x[:1000], y[:1000])
    _csv(tmp / "train_week2.csv", x[:1400], y[:1400])  # the refresh: 400 more examples
    root = tmp / "root"
    summaries, codes = {}, {}
    for name, extra in RUNS:
        train = tmp / ("train_week2.csv" if name == "refresh" else "train_week1.csv")
        codes[name] = cli.main(["run", "--csv", str(train), "--csv-eval", str(tmp / "eval.csv"),
                                "--output-root", str(root), "--float-epochs", "6",
                                "--max-accuracy-drop-pt", "3", *extra])
        if codes[name] == 0:
            with open(root / "summary.json") as f:
                summaries[name] = json.load(f)
    return root, summaries, codes


def test_one_row_per_run_equal_to_each_runs_summary(store_runs, capsys):
    root, summaries, codes = store_runs
    assert codes == {name: 1 if name == "fails_export" else 0 for name, _ in RUNS}
    rows = experiments.runs(experiments.connect(str(root)))
    assert len(rows) == len(RUNS)
    by_name = dict(zip([n for n, _ in RUNS], rows))  # time order is run order
    for name, s in summaries.items():
        r = by_name[name]
        assert r["float"] == s["float_accuracy"] and r["int8"] == s["int8_accuracy"], name
        assert r["delta"] == pytest.approx(-s["delta_pt"] / 100)
        assert r["int8_bytes"] == s["int8_tflite_bytes"] and r["blessed"] == s["blessed"]
        assert r["int8_latency_ms"] == pytest.approx(s["int8_latency_ms"], rel=1e-5)
        assert r["pushed"] == (s["pushed_path"] is not None)
        if s["pushed_path"]:
            assert os.path.join(r["pushed_to"], "tflite") == s["pushed_path"]
        assert r["report"] == s["report"]
    assert by_name["per_tensor"]["per_tensor"] is True and by_name["default"]["per_tensor"] is False
    assert by_name["not_blessed"]["status"] == "NOT blessed"
    failed = by_name["fails_export"]
    assert failed["status"] == "FAILED in IntegerExporter" and failed["int8_bytes"] is None
    assert "EdgeTpuRequiredError" in failed["error"] and "require_edgetpu" in failed["error"]
    refresh = by_name["refresh"]
    assert refresh["examples"] != by_name["default"]["examples"]
    assert refresh["trainer_model"] != by_name["default"]["trainer_model"]

    assert cli.main(["experiments", str(root)]) == 0
    out = capsys.readouterr().out
    assert "FAILED in IntegerExporter" in out and "EdgeTpuRequiredError" in out
    assert len([line for line in out.splitlines() if line[:1].isdigit()]) == len(RUNS)
    assert cli.main(["experiments", str(root), "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + len(RUNS) and lines[0].startswith("run_id,pipeline,time,status")
    frame = experiments.frame(str(root))
    assert list(frame["status"]) == [r["status"] for r in rows]


def test_per_tensor_qat_exports_faithfully_with_one_scale_per_weight_tensor(store_runs):
    """`run --per-tensor` (the README's way to cut the per-channel parameters) exports: BN is
    folded before QAT and every kernel is fake-quantized per tensor."""
    _, summaries, _ = store_runs
    s = summaries["per_tensor"]
    assert s["parity_top1_agreement"] >= 0.9 and s["blessed"], s
    assert clear_disagreements(s["parity_top1_agreement"], s["parity_near_ties"],
                               s["parity_examples"]) <= 2, s
    assert s["qat"]["folded_layers"] == 9 and s["qat"]["float_layers"] == 0
    with open(s["pushed_path"], "rb") as f:
        counts = validate.weight_scale_counts(f.read())
    assert len(counts) == 10 and set(counts.values()) == {1}, counts
    with open(summaries["default"]["pushed_path"], "rb") as f:  # per channel: one per filter
        assert max(validate.weight_scale_counts(f.read()).values()) > 1


def test_diff_shows_exactly_the_changed_fields(store_runs, capsys):
    root, _, _ = store_runs
    rows = experiments.runs(experiments.connect(str(root)))
    config = {"scheme", "bits", "per_tensor", "epochs", "learning_rate", "examples",
              "examples_id", "trainer_model"}
    assert experiments.diff(rows, "1", "1") == {}
    d = experiments.diff(rows, "1", "2")
    assert config & set(d) == {"per_tensor"} and d["per_tensor"] == (False, True)
    assert all(va != vb for va, vb in d.values())
    same = {k for k in rows[0] if k not in d} - {"run_id", "time", "report", "slice_deltas"}
    assert all(rows[0][k] == rows[1][k] for k in same)
    d = experiments.diff(rows, "1", "3")
    assert config & set(d) == {"epochs", "learning_rate"}
    d = experiments.diff(rows, rows[0]["run_id"], rows[5]["run_id"])
    assert {"examples", "examples_id", "trainer_model"} <= set(d) and not (
        config - {"examples", "examples_id", "trainer_model"}) & set(d)
    assert cli.main(["experiments", str(root), "--diff", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "per_tensor" in out and "epochs" not in out
    assert cli.main(["experiments", str(root), "--diff", "1", "9"]) == 2


def test_html_page_renders_runs_front_and_slices(store_runs, tmp_path):
    root, _, _ = store_runs
    page = tmp_path / "experiments.html"
    assert cli.main(["experiments", str(root), "--html", str(page)]) == 0
    text = page.read_text()
    for section in ("runs", "over-time", "int8_bytes", "int8_latency_ms", "slices"):
        assert f'id="{section}"' in text, section
    assert text.count("data:image/png;base64,") == 3  # self-contained: no external files
    assert 'src="http' not in text and "<link" not in text and "<script" not in text
    rows = experiments.runs(experiments.connect(str(root)))
    front = experiments.pareto(rows)
    assert front and all(rows[i]["int8_bytes"] for i in front)
    for i in front:  # nothing on the front is beaten on both size and drop
        assert not any(r["int8_bytes"] < rows[i]["int8_bytes"] and r["delta"] > rows[i]["delta"]
                       for r in rows if r["int8_bytes"] and r["delta"] is not None)
    img = render_in_chromium(str(page), tmp_path / "experiments.png", 1400, 2000)
    assert img.shape[:2] == (2000, 1400) and float(img[..., :3].std()) > 0.05


def test_every_artifact_property_is_one_its_record_names(store_runs):
    """Writers and readers agree: a property written under a name no record has (a typo, a
    rename on one side) fails here, and each record reads back typed values."""
    root, summaries, _ = store_runs
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(
        str(root / "metadata.sqlite")))
    producers = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    record_of = {("QuantizeTrainer", "qat_model"): records.QatModel,
                 ("IntegerExporter", "quantized_model"): records.Int8Model,
                 ("QuantEvaluator", "blessing"): records.Blessing,
                 ("QuantEvaluator", "evaluation"): records.Evaluation,
                 ("VerifiedPusher", "pushed_model"): records.Pushed}
    seen = set()
    for e in store.get_executions():
        for ev in store.get_events_by_execution_ids([e.id]):
            key = next((s.key for s in ev.path.steps if s.HasField("key")), None)
            rec = record_of.get((producers[e.type_id], key))
            if rec is None or ev.type != metadata_store_pb2.Event.OUTPUT:
                continue
            (art,) = store.get_artifacts_by_id([ev.artifact_id])
            props = mlmd_properties(art)
            assert rec.unknown(props) == [], (rec.__name__, rec.unknown(props))
            seen.add(rec)
            r = rec.from_properties(props)
            if rec is records.QatModel:
                assert isinstance(r.float_layer_names, list) and isinstance(r.per_tensor, bool)
            if rec is records.Int8Model:
                assert isinstance(r.op_counts, dict) and r.integer_validated is True
            if rec is records.Blessing:
                assert isinstance(r.blessing_reasons, list) and len(r.int8_sha256) == 64
    assert seen == set(record_of.values())
    back = records.QatModel(per_tensor=True, float_layer_names=["a"], qat_seconds_per_step=0.5)
    assert records.QatModel.from_properties(
        {k: json.dumps(v) if isinstance(v, list) else int(v) if isinstance(v, bool) else v
         for k, v in back.to_properties().items()}) == back
    with pytest.raises(TypeError):
        records.Blessing(blesed=True)  # pylint: disable=unexpected-keyword-arg
    assert np.isfinite(summaries["default"]["int8_latency_ms"])


def test_mlmd_commands_start_without_tensorflow_or_tfx(store_runs):
    """`experiments` and `lineage` read SQLite: a process running both (on a store with pushed
    models, so lineage walks every producer) never imports TensorFlow, TFX, Beam or TFMA."""
    root, _, _ = store_runs
    code = ("import sys; from tfx_qat.pipelines import cli; "
            f"assert cli.main(['experiments', {str(root)!r}]) == 0; "
            f"assert cli.main(['lineage', {str(root)!r}]) == 0; "
            "heavy = [m for m in ('tensorflow', 'tfx', 'apache_beam', "
            "'tensorflow_model_analysis', 'tf_keras') if m in sys.modules]; "
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pushed model" in done.stdout and "blessed" in done.stdout


def test_a_store_of_many_runs_is_read_in_batches(tmp_path):
    """The `make bench` store (records written as the executors write them), small: every run
    listed with its values, in a fixed number of MLMD calls plus two per run."""
    from benchmarks.bench_experiments import build_store
    build_store(str(tmp_path / "m.sqlite"), 40)
    store = experiments.connect(str(tmp_path / "m.sqlite"))
    calls = []

    class Counting:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(store, name)

    rows = experiments.runs(Counting())
    assert len(rows) == 40 and [r["run_id"] for r in rows] == sorted(r["run_id"] for r in rows)
    assert len(calls) <= 8 + 2 * 40, sorted(set(calls))
    assert [r["per_tensor"] for r in rows[:4]] == [False, True, False, True]
    assert all(r["status"] in ("blessed", "NOT blessed") and r["int8_bytes"] >= 100_000
               and r["pushed"] == r["blessed"] for r in rows)
    assert experiments.diff(rows, "1", "2")["per_tensor"] == (False, True)


def test_a_metadata_service_that_does_not_answer_says_what_to_do(tmp_path):
    """--mlmd-config naming a gRPC service nobody serves (a port-forward not running, or a KFP
    release without the metadata store): a ValueError with the fix, before any table."""
    import socket
    from tfx_qat.pipelines import store
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "grpc.pbtxt"
    cfg.write_text(f'host: "127.0.0.1"\nport: {port}\n')
    with pytest.raises(ValueError, match=r"no metadata service answers at 127.0.0.1:\d+ .*"
                                         r"port-forward svc/metadata-grpc-service.*artifact API"):
        store.connect(mlmd_config=str(cfg))
