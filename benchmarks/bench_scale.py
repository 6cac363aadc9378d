"""`make bench-scale`: QuantEvaluator and QuantizeTrainer as the data grows (a benchmark, not a test).

Uses a finished Fashion-MNIST run (``--run-root``, default ``runs/bench/pipeline_run``, which
``make bench`` leaves; else ``make run``'s ``runs/fashion_mnist``): its float model and int8 model.
For each size N (default 10k, 100k, 1M) an Examples artifact whose splits hold N examples (shards
of 10,000 Fashion-MNIST records, hard-linked: the same bytes repeated) gets, each as its own
process timed whole (wall time, peak resident memory from ``os.wait4``):
  - StatisticsGen (TFX's, Beam) over the train split;
  - QuantizeTrainer (1 QAT epoch over the N training examples, split checked from those
    statistics);
  - QuantEvaluator over the N eval examples (Beam DirectRunner in memory, as the pipeline runs it:
    the driver process is the whole job);
  - for the record, the serial driver pass over the train split that QuantizeTrainer ran before
    it read StatisticsGen's statistics.
Writes ``<out>/scale.{json,md,png}``; ``make bench-scale`` copies them to
``benchmarks/results/bench_scale_results.{json,md}`` and ``benchmarks/results/bench_scale.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Any, Dict, List

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

UNIT = 10_000  # records per shard
SPEC_JSON = "dataspec.json"


def _artifacts(run_root: str) -> Dict[str, Any]:
    """The run's Examples, float Model (Trainer) and int8 Model (IntegerExporter), as TFX
    artifacts with their MLMD properties."""
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata
    from tfx.types import artifact_utils

    from tfx_qat.components import keys
    from tfx_qat.pipelines import store as mlmd_store
    path = os.path.join(run_root, "metadata.sqlite")
    if not os.path.exists(path):
        raise SystemExit(f"error: no pipeline run at {run_root} (no metadata.sqlite): run "
                         "`make bench` or `make run` first, or pass --run-root")
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(path))
    types = {t.name: t for t in store.get_artifact_types()}
    run = mlmd_store.Reader(store).latest_run()

    def tfx(type_name, a):
        return artifact_utils.deserialize_artifact(types[type_name], a)

    return {"examples": tfx("Examples", run.step("QuantizeTrainer").input(keys.EXAMPLES)),
            "float": tfx("Model", run.output(["Trainer"], "model")),
            "int8": tfx("Model", run.output(["IntegerExporter"], keys.QUANTIZED_MODEL))}


def _write_examples(run_root: str, n: int, out: str) -> None:
    """<out>/Split-{train,eval}/ with n records each: n / UNIT hard links to one shard of UNIT
    records (the first UNIT of the run's split)."""
    import tensorflow as tf
    src = _artifacts(run_root)["examples"]
    for split in ("train", "eval"):
        d = os.path.join(out, f"Split-{split}")
        os.makedirs(d, exist_ok=True)
        unit = os.path.join(out, f"unit-{split}.gz")
        if not os.path.exists(unit):
            files = tf.io.gfile.glob(os.path.join(src.uri, f"Split-{split}", "*"))
            with tf.io.TFRecordWriter(unit, "GZIP") as w:
                for r in tf.data.TFRecordDataset(files, "GZIP").take(UNIT):
                    w.write(r.numpy())
        shards = n // UNIT
        for i in range(shards):
            os.link(unit, os.path.join(d, f"data-{i:05d}-of-{shards:05d}.gz"))


def _examples_artifact(uri: str):
    from tfx.types import artifact_utils, standard_artifacts
    ex = standard_artifacts.Examples()
    ex.uri = uri
    ex.split_names = artifact_utils.encode_split_names(["train", "eval"])
    return ex


def _spec(run_root: str):
    from tfx_qat.quant_lib.config import DataSpec
    with open(os.path.join(run_root, "data", SPEC_JSON)) as f:
        return DataSpec.from_json(f.read())


def child(args) -> int:
    """One component over one size, in this process (the parent times it)."""
    from tfx.dsl.components.base import base_beam_executor
    from tfx.types import artifact_utils, standard_artifacts

    from tfx_qat.components import keys
    from tfx_qat.components.utils import read_record
    from tfx_qat.pipelines.pipeline import DEFAULT_BEAM_ARGS
    from tfx_qat.quant_lib.artifacts import records
    examples = _examples_artifact(args.examples)
    out_root = args.work
    if args.component == "statistics":
        from tfx.components.statistics_gen.executor import Executor
        out = standard_artifacts.ExampleStatistics()
        out.uri = os.path.join(out_root, "statistics")
        Executor(base_beam_executor.BaseBeamExecutor.Context(
            beam_pipeline_args=DEFAULT_BEAM_ARGS)).Do(
            {"examples": [examples]}, {"statistics": [out]}, {"exclude_splits": '["eval"]'})
        return 0
    spec = _spec(args.run_root)
    if args.component == "full_pass":  # what QuantizeTrainer did before statistics were wired
        from tfx_qat.quant_lib.examples.inputs import ImageAdapter, ModelInput
        bound = ImageAdapter(spec).bind([ModelInput(spec.image_key, tuple(spec.image_shape),
                                                    "float32")],
                                        os.path.join(args.examples, "Split-train"),
                                        spec.num_classes)
        bound.count(os.path.join(args.examples, "Split-train"))
        return 0
    arts = _artifacts(args.run_root)
    if args.component == "trainer":
        from tfx_qat.components.quantize_trainer.executor import Executor
        from tfx_qat.quant_lib.config import QuantizationConfig
        stats = standard_artifacts.ExampleStatistics()
        stats.uri = os.path.join(out_root, "statistics")
        stats.split_names = artifact_utils.encode_split_names(["train"])
        out = standard_artifacts.Model()
        out.uri = os.path.join(out_root, "qat_model")
        os.makedirs(out.uri)
        Executor().Do({keys.EXAMPLES: [examples], keys.BASE_MODEL: [arts["float"]],
                       keys.STATISTICS: [stats]}, {keys.QAT_MODEL: [out]},
                      {keys.CONFIG: QuantizationConfig(data=spec, epochs=1,
                                                       learning_rate=1e-4).to_json()})
        return 0
    from tfx_qat.components.quant_evaluator.executor import Executor
    from tfx_qat.quant_lib.config import EvalConfig
    blessing, evaluation = standard_artifacts.ModelBlessing(), standard_artifacts.ModelEvaluation()
    blessing.uri, evaluation.uri = (os.path.join(out_root, "blessing"),
                                    os.path.join(out_root, "evaluation"))
    for a in (blessing, evaluation):
        os.makedirs(a.uri)
    Executor(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=DEFAULT_BEAM_ARGS)).Do(
        {keys.EXAMPLES: [examples], keys.MODEL: [arts["float"]],
         keys.QUANTIZED_MODEL: [arts["int8"]]},
        {keys.BLESSING: [blessing], keys.EVALUATION: [evaluation]},
        {keys.CONFIG: EvalConfig(data=spec, max_accuracy_drop_pt=1.0).to_json()})
    with open(os.path.join(out_root, "result.json"), "w") as f:
        json.dump({"eval_examples": read_record(evaluation, records.Evaluation).eval_examples}, f)
    return 0


def run(args) -> Dict[str, Any]:
    from benchmarks.bench import cpu_name, timed_process
    rows: List[Dict[str, Any]] = []
    t0 = time.time()
    for n in args.sizes:
        ex_dir = os.path.join(args.out, f"examples_{n}")
        shutil.rmtree(ex_dir, ignore_errors=True)
        _write_examples(args.run_root, n, ex_dir)
        for component in LABELS:
            work = os.path.join(args.out, f"work_{n}_{component}")
            shutil.rmtree(work, ignore_errors=True)
            os.makedirs(work)
            stats_dir = os.path.join(args.out, f"work_{n}_statistics")
            if component == "trainer":  # the statistics StatisticsGen wrote for this size
                shutil.copytree(os.path.join(stats_dir, "statistics"),
                                os.path.join(work, "statistics"))
            print(f">> {component} on {n:,} examples ...", flush=True)
            r = timed_process([sys.executable, "-m", "benchmarks.bench_scale", "--child",
                                component, "--run-root", args.run_root, "--examples", ex_dir,
                                "--work", work], os.path.join(work, "log.txt"))
            r.update({"component": component, "examples": n,
                      "examples_per_second": n / r["seconds"]})
            if component == "evaluator":
                with open(os.path.join(work, "result.json")) as f:
                    assert json.load(f)["eval_examples"] == n  # every example was scored
            print(f"   {r['seconds']:.1f} s, peak {r['peak_rss_mb']:,.0f} MB", flush=True)
            rows.append(r)
            if component == "evaluator" or not args.keep:
                shutil.rmtree(os.path.join(work, "qat_model"), ignore_errors=True)
        shutil.rmtree(ex_dir, ignore_errors=True)
    return {"date": time.strftime("%Y-%m-%d"), "machine": cpu_name(), "command": "make bench-scale",
            "sizes": args.sizes, "rows": rows, "wall_minutes": (time.time() - t0) / 60,
            "image_dtype": _spec(args.run_root).image_dtype}


LABELS = {"statistics": "StatisticsGen (train split)", "trainer": "QuantizeTrainer (1 QAT epoch)",
          "evaluator": "QuantEvaluator (float + int8, TFMA)",
          "full_pass": "the driver pass QuantizeTrainer no longer runs (parse, NaN, labels)"}


def _short(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def to_markdown(r: Dict[str, Any]) -> str:
    lines = [f"Measured {r['date']} on {r['machine']} with `{r['command']}` "
             f"({r['wall_minutes']:.1f} min)" + (f", on the run's Fashion-MNIST records "
             f"({r['image_dtype']} pixels)" if "image_dtype" in r else "") +
             ". Each cell: one process, timed whole; memory is its peak resident set.", "",
             "| component | examples | wall time (s) | examples/s | peak memory (MB) |",
             "|---|---|---|---|---|"]
    for c in LABELS:
        for row in (x for x in r["rows"] if x["component"] == c):
            lines.append(f"| {LABELS[c]} | {row['examples']:,} | {row['seconds']:.1f} | "
                         f"{row['examples_per_second']:,.0f} | {row['peak_rss_mb']:,.0f} |")
    lines += ["", "Linear time shows as a constant cost per extra example between sizes (the "
              "smallest size is mostly process start); flat memory as a peak that does not grow "
              "with the data:", "",
              "| component | " + " | ".join(
                  f"ms per extra example, {_short(a)} -> {_short(b)}"
                  for a, b in zip(r["sizes"], r["sizes"][1:])) +
              " | peak memory, largest / smallest size |",
              "|---|" + "---|" * len(r["sizes"])]
    for c in LABELS:
        rows = sorted((x for x in r["rows"] if x["component"] == c), key=lambda x: x["examples"])
        if len(rows) > 1:
            marginal = [1000 * (b["seconds"] - a["seconds"]) / (b["examples"] - a["examples"])
                        for a, b in zip(rows, rows[1:])]
            lines.append(f"| {LABELS[c]} | " + " | ".join(f"{m:.3f}" for m in marginal) +
                         f" | {rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}x |")
    return "\n".join(lines) + "\n"


def plot(r: Dict[str, Any], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for c, label in LABELS.items():
        rows = sorted((x for x in r["rows"] if x["component"] == c), key=lambda x: x["examples"])
        n = [x["examples"] for x in rows]
        a.loglog(n, [x["seconds"] for x in rows], "o-", label=label)
        b.semilogx(n, [x["peak_rss_mb"] for x in rows], "o-", label=label)
    a.set(xlabel="examples", ylabel="wall time (s)", title="wall time per process (log-log)")
    b.set(xlabel="examples", ylabel="peak memory (MB)", title="peak resident memory")
    b.set_ylim(bottom=0)
    a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run-root", default="runs/bench/pipeline_run")
    p.add_argument("--sizes", type=lambda t: [int(x) for x in t.split(",")],
                   default=[10_000, 100_000, 1_000_000])
    p.add_argument("--out", default="runs/bench_scale")
    p.add_argument("--keep", action="store_true", help="keep the QAT models written")
    p.add_argument("--render", action="store_true",
                   help="only rewrite <out>/scale.{md,png} from <out>/scale.json")
    p.add_argument("--child", choices=["statistics", "trainer", "evaluator", "full_pass"],
                   dest="component")
    p.add_argument("--examples")
    p.add_argument("--work")
    args = p.parse_args(argv)
    args.run_root, args.out = os.path.abspath(args.run_root), os.path.abspath(args.out)
    if args.component:
        return child(args)
    if not os.path.exists(os.path.join(args.run_root, "metadata.sqlite")) and \
            os.path.exists("runs/fashion_mnist/metadata.sqlite"):
        args.run_root = os.path.abspath("runs/fashion_mnist")
    if any(n % UNIT for n in args.sizes):
        raise SystemExit(f"error: --sizes must be multiples of {UNIT}")
    os.makedirs(args.out, exist_ok=True)
    if args.render:
        with open(os.path.join(args.out, "scale.json")) as f:
            r = json.load(f)
    else:
        r = run(args)
        with open(os.path.join(args.out, "scale.json"), "w") as f:
            json.dump(r, f, indent=2)
    with open(os.path.join(args.out, "scale.md"), "w") as f:
        f.write(to_markdown(r))
    plot(r, os.path.join(args.out, "scale.png"))
    print(to_markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
