"""Evaluator throughput vs a raw loop over the same split (a benchmark, not a test).

    .venv/bin/python -m benchmarks.bench_evaluator --output-root runs/fashion_mnist

Uses the artifacts of the latest run under the output root (read from MLMD): the eval split, the
float Keras model and the int8 TFLite model. Times, in one process:
  - QuantEvaluator's Beam scoring (DirectRunner, in memory): both models, per-slice counts;
  - a raw loop doing the same work: decode the split, float Keras predict + int8 interpreter;
  - a raw int8-only interpreter loop.
Prints examples/second and ratios, and writes bench_evaluator.json under the output root.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--output-root", default="runs/fashion_mnist")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from tfx_qat.pipelines import store
    from tfx_qat.quant_lib.evaluation import metrics, scoring as evaluation_scoring
    from tfx_qat.quant_lib.qat import saving
    from tfx_qat.quant_lib.tflite import interpreter
    import functools

    from tfx_qat.quant_lib.config import DataSpec
    from tfx_qat.quant_lib.examples.data import load_arrays
    from tfx_qat.quant_lib.examples.inputs import ImageAdapter, bind_model
    from tfx_qat.quant_lib.tflite.interpreter import tflite_inputs

    root = os.path.abspath(args.output_root)
    with open(os.path.join(root, "summary.json")) as f:
        summary = json.load(f)
    run = store.Reader(store.connect(root)).latest_run()
    eval_uri = os.path.join(run.step("QuantizeTrainer").input("examples").uri, "Split-eval")
    trainer_model = run.output(["Trainer"], "model")
    float_dir = os.path.join(trainer_model.uri, "Format-Serving")
    int8_path = os.path.join(summary["artifacts"]["int8_model"], "Format-Serving", "tflite")
    with open(os.path.join(root, "data", "dataspec.json")) as f:
        spec = DataSpec.from_json(f.read())
    with open(int8_path, "rb") as f:
        model_inputs = tflite_inputs(f.read())
    bound = bind_model(ImageAdapter(spec), model_inputs, eval_uri, spec.num_classes)
    scoring = evaluation_scoring.ScoringInputs(functools.partial(ImageAdapter, spec), bound.mapping,
                                       tuple(model_inputs), spec.num_classes)

    def beam_run():
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "stats.jsonl")
            with beam.Pipeline(options=PipelineOptions(["--direct_running_mode=in_memory"])) as bp:
                scored = (bp | beam.io.ReadFromTFRecord(os.path.join(eval_uri, "*"))
                          | evaluation_scoring.ScoreAndCombine(
                              evaluation_scoring.ScoredModels(float_dir, int8_path), scoring, (),
                              3, 256))
                _ = (scored["stats"]
                     | beam.Map(evaluation_scoring.encode)
                     | beam.io.WriteToText(path, shard_name_template=""))
            with open(path) as f:
                return evaluation_scoring.decode(f.read().splitlines())[()].n

    def raw_both():
        x, y = load_arrays(eval_uri, spec)
        model = saving.load_model(float_dir)
        with open(int8_path, "rb") as f:
            runner = interpreter.TFLiteClassifier(f.read())
        model.predict(x, batch_size=256, verbose=0)
        metrics.correct(runner.predict(x, 256), y)
        return len(y)

    def raw_int8():
        x, y = load_arrays(eval_uri, spec)
        with open(int8_path, "rb") as f:
            runner = interpreter.TFLiteClassifier(f.read())
        metrics.correct(runner.predict(x, 256), y)
        return len(y)

    fns = (("evaluator_beam", beam_run), ("raw_float_and_int8_loop", raw_both),
           ("raw_int8_interpreter_loop", raw_int8))
    times = {label: [] for label, _ in fns}
    for _ in range(args.repeats):  # interleaved rounds: a slow spell of the machine hits all
        for label, fn in fns:
            t0 = time.perf_counter()
            n = fn()
            times[label].append(time.perf_counter() - t0)
    results = {}
    for label, _ in fns:
        mid = sorted(times[label])[(args.repeats - 1) // 2]
        results[label] = {"examples": n, "seconds": mid, "examples_per_second": n / mid,
                          "rounds_seconds": times[label]}
        print(f"{label:28s} {n} examples in {mid:.2f}s = {n / mid:,.0f} ex/s (median of "
              f"{args.repeats} interleaved rounds)")
    for ref in ("raw_float_and_int8_loop", "raw_int8_interpreter_loop"):
        ratio = results["evaluator_beam"]["examples_per_second"] / \
            results[ref]["examples_per_second"]
        results[f"evaluator_vs_{ref}"] = ratio
        print(f"evaluator throughput / {ref}: {ratio:.2f}x")
    results["note"] = ("all timings include loading the models and decoding the split; "
                       "evaluator = Beam DirectRunner in memory")
    out = os.path.join(root, "bench_evaluator.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
