"""tfx-qat command line: ``python -m pipelines.cli run [--dataset ... | --csv ... | --tfrecords ...]``."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, NamedTuple, Optional

import quant_lib  # noqa: F401
from quant_lib.config import (MOVES, ConfigError, EvalConfig, ExportConfig, QuantizationConfig,
                               SearchConfig, Threshold)

VALIDATION_FRACTION = 1 / 12  # of the training images, when --search-budget-pt asks for a split
# Exit codes of the pipeline commands (README "Not blessed?"): 0 ran (blessed, or not blessed
# without --fail-if-not-blessed), 1 a component failed, 2 bad input before the run, 3 ran and the
# int8 model was NOT blessed (with --fail-if-not-blessed).
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_BLESSED = 1, 2, 3


class Built(NamedTuple):
    """A pipeline a command line defines, and where its run writes (summary.json, MLMD)."""
    pipeline: Any
    output_root: str
    metadata_path: str


FAIL_IF_NOT_BLESSED_HELP = (f"exit with {EXIT_NOT_BLESSED} when the pipeline ran but the int8 model "
                            "was NOT blessed (not pushed); default: exit 0, see summary.json")


def _shape(text: str):
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--image-shape must look like 28,28,1, got {text!r}")
    if len(dims) != 3:
        raise argparse.ArgumentTypeError("--image-shape needs three values: H,W,C")
    return dims


def _pipeline_flags() -> argparse.ArgumentParser:
    """Flags shared by every runner: what to train, how to quantize, when to bless."""
    r = argparse.ArgumentParser(add_help=False)
    r.add_argument("--image-key", default="image", help="--tfrecords image feature (float list)")
    r.add_argument("--label-key", default="label", help="--tfrecords label feature (int64)")
    r.add_argument("--image-shape", type=_shape, help="H,W,C (default: square, 1 channel)")
    r.add_argument("--num-classes", type=int, help="default: inferred (CSV) / required (TFRecords)")
    r.add_argument("--image-scale", type=float,
                   help="--tfrecords: multiply pixels by this (default: 1/255 if values exceed 1)")
    r.add_argument("--float-epochs", type=int, default=5)
    r.add_argument("--io-type", choices=("int8", "uint8"), default="int8",
                   help="the int8 model's input/output type (uint8: what the Task Library's "
                   "ImageClassifier and Android bitmaps take)")
    r.add_argument("--labels", type=lambda t: tuple(t.split(",")), metavar="NAME,NAME,...",
                   help="class names in class-id order, for the model's metadata and labels.txt "
                   "(default: the built-in dataset's, else the class ids)")
    r.add_argument("--qat-epochs", type=int, default=1)
    r.add_argument("--qat-learning-rate", type=float, default=1e-4)
    r.add_argument("--qat-scheme", choices=("default_8bit", "n_bit"), default="default_8bit")
    r.add_argument("--weight-bits", type=int, default=8, help="n_bit scheme only")
    r.add_argument("--activation-bits", type=int, default=8, help="n_bit scheme only")
    r.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor")
    r.add_argument("--keep-float", action="append", default=[], metavar="LAYER",
                   help="layer name to leave in float (repeatable)")
    r.add_argument("--keep-float-regex", action="append", default=[], metavar="REGEX")
    r.add_argument("--keep-float-type", action="append", default=[], metavar="CLASS")
    r.add_argument("--strict", action="store_true",
                   help="fail on a layer the scheme cannot quantize instead of keeping it float")
    r.add_argument("--width", type=int, default=32, help="channels of the CNN's first conv")
    r.add_argument("--search-budget-pt", type=float, metavar="PT",
                   help="accuracy-aware quantization: QuantizeTrainer searches (per-layer "
                        "sensitivity, then the moves below) for the first model within PT "
                        "top-1 of float on a 'validation' split carved from train "
                        f"({100 * VALIDATION_FRACTION:.1f}%%); off by default")
    r.add_argument("--search-target", choices=("cpu", "edgetpu"), default="cpu")
    r.add_argument("--search-move", action="append", choices=MOVES, metavar="MOVE",
                   help=f"allowed search moves, in order (default: all of {', '.join(MOVES)}; "
                        "float_fallback only for --search-target cpu)")
    r.add_argument("--search-max-trials", type=int, default=6)
    r.add_argument("--search-validation-fraction", type=float, default=VALIDATION_FRACTION,
                   metavar="F", help="fraction of the built-in training images carved out as "
                   "the search's validation split (a budget of B pt needs roughly "
                   "38,400 x (float error rate) / B^2 examples; the search says how many)")
    r.add_argument("--search-strict", action="store_true",
                   help="refuse to search when the budget is below what the validation split "
                        "resolves (default: warn)")
    r.add_argument("--require-edgetpu", action="store_true",
                   help="fail IntegerExporter unless edgetpu_compiler is installed and compiles "
                        "the int8 model")
    r.add_argument("--max-accuracy-drop-pt", type=float, default=1.0,
                   help="bless only if int8 accuracy is at most this many points below float")
    r.add_argument("--min-int8-accuracy", type=float, default=0.0,
                   help="bless only if int8 accuracy is at least this fraction")
    r.add_argument("--slice-by", action="append", default=[], metavar="FEATURE",
                   help="evaluate per value of this tf.Example feature (repeatable), e.g. label")
    r.add_argument("--max-slice-drop-pt", type=float,
                   help="also require every --slice-by slice to drop at most this many points")
    r.add_argument("--tfma-metric", action="append", default=[], metavar="CLASS",
                   help="TFMA/Keras metric class computed by TFMA on both models' predictions "
                        "(repeatable), e.g. SparseTopKCategoricalAccuracy")
    r.add_argument("--max-regression-pt", type=float,
                   help="bless only if int8 accuracy is at most this many points below the "
                        "latest blessed (pushed) int8 model; skipped on the first run")
    r.add_argument("--min-int8-speedup", type=float, metavar="RATIO",
                   help="bless only if the int8 model runs at least RATIO times the float "
                        "reference's speed on this machine (e.g. 1.0); on a CPU without int8 "
                        "dot-product instructions (no VNNI / dotprod) it is recorded, not applied, "
                        "unless --speed-gate-any-cpu")
    r.add_argument("--speed-gate-any-cpu", action="store_true",
                   help="apply --min-int8-speedup whatever the worker's CPU")
    _guard_flags(r)
    r.add_argument("--eval-config", metavar="FILE",
                   help="a tfma.EvalConfig (text proto .pbtxt or JSON) that decides the blessing "
                        "(float = baseline, int8 = candidate) instead of the accuracy flags above")
    r.add_argument("--no-cache", action="store_true", help="disable TFX caching")
    r.add_argument("--fail-if-not-blessed", action="store_true", help=FAIL_IF_NOT_BLESSED_HELP)
    r.add_argument("--beam-arg", action="append", default=None,
                   help="Beam pipeline arg, repeatable (default: DirectRunner in memory); e.g. "
                        "--beam-arg=--runner=DataflowRunner (see README, Distributed Beam)")
    return r


def _guard_flags(r: argparse.ArgumentParser) -> None:
    """EvalConfig.max_class_drop_pt / class_drop_rule: tfx-qat's paired-evidence class guard."""
    r.add_argument("--max-class-drop-pt", type=float, default=2.0, metavar="PT",
                   help="the class guard: block when paired evidence shows a class or slice "
                        "losing more than PT points (default 2.0; README 'QuantEvaluator')")
    r.add_argument("--class-drop-rule", choices=("harm", "strict"), default="harm",
                   help="harm: block on evidence of a drop beyond the tolerance (default); "
                        "strict: bless only on evidence that every drop is within it")
    r.add_argument("--no-class-guard", action="store_true",
                   help="turn the class guard off (the gate alone decides)")


def _example_parser(sub, name: str, help_text: str, root: str, qat_epochs: int, gate: str):
    """A subcommand running one of the example pipelines (output root, QAT epochs, cache, gate)."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--output-root", default=os.path.join("runs", root))
    p.add_argument("--qat-epochs", type=int, default=qat_epochs)
    p.add_argument("--no-cache", action="store_true", help="disable TFX caching")
    p.add_argument("--fail-if-not-blessed", action="store_true", help=FAIL_IF_NOT_BLESSED_HELP)
    p.add_argument("--eval-config", metavar="FILE",
                   help=f"tfma.EvalConfig (.pbtxt or JSON); default: {gate}")
    return p


def _kfp_parser(sub, common) -> None:
    """compile-kfp: the built-in pipeline as a Kubeflow Pipelines v2 / Vertex AI spec."""
    k = sub.add_parser("compile-kfp", parents=[common],
                       help="compile the pipeline to a Kubeflow Pipelines v2 / Vertex AI spec (JSON)")
    k.add_argument("--image", required=True,
                   help="container image with tfx-qat installed that every step runs in")
    k.add_argument("--output-root", required=True,
                   help="pipeline root + push destination parent, e.g. gs://bucket/tfx-qat")
    k.add_argument("--data-root", required=True,
                   help="tf.Example TFRecords in <data-root>/train/* and <data-root>/eval/*")
    k.add_argument("--dataset", choices=("fashion_mnist", "digits"),
                   help="DataSpec of a built-in dataset; else give --num-classes (+ --image-shape)")
    k.add_argument("--name", default="tfx-qat", help="pipeline name")
    k.add_argument("--output", default="pipeline.json", help="where to write the spec JSON")
    k.add_argument("--allow-local-paths", action="store_true",
                   help="accept local --output-root/--data-root: only where every step mounts "
                   "this filesystem at the same path (default: refused before compiling)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tfx-qat", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    common = _pipeline_flags()
    r = sub.add_parser("run", parents=[common],
                       help="ingest data and run the QAT pipeline locally (LocalDagRunner)")
    src = r.add_mutually_exclusive_group()
    src.add_argument("--dataset", choices=("fashion_mnist", "digits"), default="fashion_mnist",
                     help="built-in real dataset (default: fashion_mnist from the Debian package)")
    src.add_argument("--csv", metavar="TRAIN_CSV",
                     help="your own CSV: a label column plus one numeric column per pixel")
    src.add_argument("--tfrecords", metavar="DIR",
                     help="your own tf.Example TFRecords in DIR/train/* and DIR/eval/*")
    r.add_argument("--csv-eval", metavar="EVAL_CSV", help="eval CSV (default: 10%% of --csv rows)")
    r.add_argument("--label-column", default="label")
    r.add_argument("--output-root", help="where data, artifacts, MLMD, pushes and summary.json go "
                   "(default: runs/<dataset>)")
    r.add_argument("--limit", type=int, help="use only the first N Fashion-MNIST training images")
    _kfp_parser(sub, common)
    pg = sub.add_parser("penguin", help="TFX's own penguin example (Transform + the tfx-shipped "
                        "penguin_utils_keras.py module, unmodified) with tfx-qat added")
    pg.add_argument("--data", help="a penguin CSV in the layout of TFX's penguins_processed.csv "
                    "(default: made from the installed palmerpenguins package, as TFX made it)")
    pg.add_argument("--output-root", default=os.path.join("runs", "penguin"))
    pg.add_argument("--qat-epochs", type=int, default=10)
    pg.add_argument("--fail-if-not-blessed", action="store_true", help=FAIL_IF_NOT_BLESSED_HELP)
    pg.add_argument("--eval-config", metavar="FILE",
                    help="tfma.EvalConfig (.pbtxt or JSON); default: the one of TFX's penguin "
                         "example (SparseCategoricalAccuracy >= 0.6, no drop vs float)")
    _example_parser(sub, "wide-deep", "an everyday TFX tabular pipeline: CSV with empty "
                         "cells, Transform (vocabulary, bucketize, z-score, label), dict-input "
                         "wide-and-deep model whose run_fn passes builder arguments", "wide_deep",
                         10, "BinaryAccuracy >= 0.6 and at most 0.05 below the float model")
    tx = _example_parser(sub, "taxi", "TFX's own Chicago taxi example (Transform + the "
                         "tfx-shipped taxi_utils_native_keras.py module and data, unmodified) "
                         "with tfx-qat added", "taxi", 1,
                         "the one of TFX's taxi example (BinaryAccuracy >= 0.6, no drop vs float)")
    tx.add_argument("--train-steps", type=int, default=1000, help="the example's own 1000")
    tb = sub.add_parser("tabular", help="binary (breast_cancer) or regression (diabetes) on "
                        "scikit-learn's bundled tabular data, gated by a tfma.EvalConfig")
    tb.add_argument("--dataset", choices=("breast_cancer", "diabetes"), default="breast_cancer")
    tb.add_argument("--task", choices=("binary", "regression", "multiclass"),
                    help="FeatureSpec.task (default: read from the float model's training loss)")
    tb.add_argument("--eval-config", metavar="FILE",
                    help="tfma.EvalConfig (.pbtxt or JSON); default: AUC may drop <= 0.02 "
                         "(binary) / MAE may grow <= 10%% (regression) vs the float model")
    tb.add_argument("--output-root", help="default: runs/<dataset>")
    tb.add_argument("--search-budget", type=float, metavar="B",
                    help="accuracy-aware search (PTQ, then QAT and its moves) on a validation "
                    "split carved from train: at most B pt top-1 drop (binary) or B %% MAE "
                    "increase (regression) vs the float model")
    tb.add_argument("--float-epochs", type=int, default=30)
    tb.add_argument("--fail-if-not-blessed", action="store_true", help=FAIL_IF_NOT_BLESSED_HELP)
    tb.add_argument("--qat-epochs", type=int, default=20)
    ln = sub.add_parser("lineage", help="for each pushed int8 model, print where it came from "
                        "(read from MLMD)")
    ln.add_argument("root", help="pipeline output root (holding metadata.sqlite) or an MLMD "
                    "SQLite file")
    ln.add_argument("--json", action="store_true", help="print JSON instead of text")
    ex = sub.add_parser("experiments", help="compare runs read from MLMD: one row per run "
                        "(QAT configuration, float/int8 metric, size, latency, blessed, pushed)")
    ex.add_argument("root", nargs="?", help="pipeline output root (holding metadata.sqlite) or an "
                    "MLMD SQLite file")
    ex.add_argument("--mlmd-config", help="text-format ml_metadata ConnectionConfig (MySQL) or "
                    "MetadataStoreClientConfig (gRPC: host, port), e.g. a Kubeflow deployment's "
                    "metadata-grpc-service, instead of ROOT")
    out = ex.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true", help="every column as CSV")
    out.add_argument("--json", action="store_true", help="every column as JSON")
    out.add_argument("--diff", nargs=2, metavar=("RUN_A", "RUN_B"), help="only the fields that "
                     "differ between two runs (run id or row number)")
    ex.add_argument("--html", help="also write a self-contained HTML page to this file")
    a = sub.add_parser("edgetpu-analyze", help="predict which ops of a .tflite map to the Edge TPU")
    a.add_argument("model", help="path to a .tflite file (e.g. <artifact>/Format-Serving/tflite)")
    a.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    lg = sub.add_parser("edgetpu-log", help="parse edgetpu_compiler output (stdout or .log file)")
    lg.add_argument("log", help="path to the captured compiler output")
    return p


def cmd_edgetpu_analyze(args) -> int:
    import json
    from quant_lib import edgetpu
    with open(args.model, "rb") as f:
        data = f.read()
    try:
        pred = edgetpu.analyze(data)
    except edgetpu.AnalyzerError as e:
        print(f"error: {args.model}: {e}", file=sys.stderr)
        return 2
    print(json.dumps(pred.to_dict(), indent=2) if args.json else pred.to_markdown())
    return 0


def cmd_edgetpu_log(args) -> int:
    import json
    from quant_lib import edgetpu_log
    with open(args.log, encoding="utf-8", errors="replace") as f:
        print(json.dumps(edgetpu_log.parse(f.read()).to_dict(), indent=2))
    return 0


def _prepare_data(args, data_root: str):
    from pipelines import data
    if args.search_budget_pt is not None:
        if args.csv or args.tfrecords:
            raise ConfigError("--search-budget-pt carves its validation split from the built-in "
                              "datasets' training images; with your own data build the pipeline "
                              "with QuantizationConfig(search=SearchConfig(validation_split=...)) "
                              "and an ExampleGen that writes that split")
        fraction = args.search_validation_fraction
        if not 0 < fraction <= 0.5:
            raise ConfigError(f"--search-validation-fraction must be in (0, 0.5], got {fraction}")
        if args.dataset == "digits":
            return data_root, data.ingest_digits(data_root, fraction)
        return data_root, data.ingest_fashion_mnist(data_root, limit=args.limit,
                                                    validation_fraction=fraction)
    if args.csv:
        return data_root, data.ingest_csv(data_root, args.csv, args.csv_eval, args.label_column,
                                          args.image_shape, args.num_classes)
    if args.tfrecords:
        if not args.num_classes:
            raise ConfigError("--tfrecords needs --num-classes N (and --image-shape H,W,C unless "
                             "images are square and single-channel)")
        return data.use_tfrecords(args.tfrecords, args.image_shape, args.num_classes,
                                  args.image_key, args.label_key, args.image_scale)
    if getattr(args, "reuse_data", False) and data.ingested_spec(data_root) is not None:
        return data_root, data.ingested_spec(data_root)  # a DAG file, parsed again and again
    if args.dataset == "digits":
        return data_root, data.ingest_digits(data_root)
    return data_root, data.ingest_fashion_mnist(data_root, limit=args.limit)


def _settings(args, name: str, root: str, data_root: str, spec):
    from components.quant_evaluator.component import check_one_gate
    from pipelines.pipeline import DEFAULT_BEAM_ARGS, PipelineSettings
    from quant_lib import gate
    eval_config = _eval_config_file(args.eval_config)
    settings = PipelineSettings(
        name=name, output_root=root, data_root=data_root,
        data=spec, float_epochs=args.float_epochs, width=args.width,
        qat=QuantizationConfig(
            data=spec, epochs=args.qat_epochs, learning_rate=args.qat_learning_rate,
            scheme=args.qat_scheme, weight_bits=args.weight_bits,
            activation_bits=args.activation_bits, per_tensor=args.per_tensor,
            keep_float_names=tuple(args.keep_float),
            keep_float_regex=tuple(args.keep_float_regex),
            keep_float_types=tuple(args.keep_float_type), strict=args.strict,
            search=None if args.search_budget_pt is None else SearchConfig(
                max_accuracy_drop_pt=args.search_budget_pt, target=args.search_target,
                moves=tuple(args.search_move) if args.search_move else None,
                max_trials=args.search_max_trials, strict=args.search_strict)),
        export=ExportConfig(data=spec, require_edgetpu=args.require_edgetpu,
                            inference_input_type=args.io_type, inference_output_type=args.io_type,
                            labels=args.labels or _builtin_labels(args)),
        eval=EvalConfig(
            data=spec, max_accuracy_drop_pt=args.max_accuracy_drop_pt,
            min_int8_accuracy=args.min_int8_accuracy, slicing_features=tuple(args.slice_by),
            max_regression_vs_baseline_pt=args.max_regression_pt,
            min_int8_speedup=args.min_int8_speedup, speed_gate_any_cpu=args.speed_gate_any_cpu,
            max_class_drop_pt=None if args.no_class_guard else args.max_class_drop_pt,
            class_drop_rule=args.class_drop_rule,
            tfma_metrics=tuple(args.tfma_metric),
            thresholds=tuple(Threshold(slice=((f, "*"),), max_drop_pt=args.max_slice_drop_pt)
                             for f in args.slice_by
                             if args.max_slice_drop_pt is not None)),
        beam_pipeline_args=args.beam_arg or list(DEFAULT_BEAM_ARGS),
        enable_cache=not args.no_cache,
        eval_config_json=eval_config and gate.to_json(eval_config))
    if eval_config is not None:
        check_one_gate(settings.eval, eval_config)
    return settings


def _builtin_labels(args):
    from pipelines.data import BUILTIN_LABELS
    builtin = not (getattr(args, "csv", None) or getattr(args, "tfrecords", None))
    return BUILTIN_LABELS.get(getattr(args, "dataset", None), ()) if builtin else ()


def build_run(args) -> Built:
    name = "csv" if args.csv else "tfrecords" if args.tfrecords else args.dataset
    root = os.path.abspath(args.output_root or os.path.join("runs", name))
    data_root, spec = _prepare_data(args, os.path.join(
        root, "data" if args.search_budget_pt is None else "data_with_validation"))
    settings = _settings(args, f"tfx-qat-{name.replace('_', '-')}", root, data_root, spec)
    from pipelines.pipeline import create_pipeline
    return Built(create_pipeline(settings), root, settings.metadata_path)


def _run_and_print(run, args) -> int:
    """Runs a pipeline (``run()`` returns its summary); a failed component is one line, exit 1;
    NOT blessed is exit 3 with ``--fail-if-not-blessed``."""
    from pipelines.runner import PipelineFailed, print_summary
    try:
        summary = run()
    except PipelineFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print_summary(summary)
    if getattr(args, "fail_if_not_blessed", False) and not summary.get("blessed"):
        print(f"NOT blessed (exit {EXIT_NOT_BLESSED}, --fail-if-not-blessed): "
              f"{'; '.join(summary.get('blessing_reasons') or ['no blessing recorded'])}",
              file=sys.stderr)
        return EXIT_NOT_BLESSED
    return 0


def _eval_config_file(path: Optional[str]):
    """The tfma.EvalConfig in FILE (text proto or JSON); ConfigError naming the flag."""
    if path is None:
        return None
    from quant_lib import gate
    if not os.path.isfile(path):
        raise ConfigError(f"--eval-config {path}: no such file")
    with open(path) as f:
        try:
            return gate.parse_eval_config(f.read())
        except ConfigError as e:
            raise ConfigError(f"--eval-config {path}: {e}") from e


def build_tabular(args) -> Built:
    from pipelines import tabular
    eval_config = _eval_config_file(args.eval_config)
    root = os.path.abspath(args.output_root or os.path.join("runs", args.dataset))
    search = None if args.search_budget is None else SearchConfig(
        max_accuracy_drop_pt=args.search_budget, max_mae_increase_pct=args.search_budget,
        moves=("more_epochs", "float_fallback"))
    label, task = tabular.ingest(args.dataset, os.path.join(
        root, "data" if search is None else "data_with_validation"), 0.25 if search else 0.0)
    pipeline = tabular.create_pipeline(
        f"tfx-qat-{args.dataset.replace('_', '-')}", os.path.join(root, "pipeline_root"),
        os.path.join(root, "data" if search is None else "data_with_validation"),
        os.path.join(root, "serving"), os.path.join(root, "metadata.sqlite"), label, task,
        spec_task=args.task, eval_config=eval_config, float_epochs=args.float_epochs,
        qat_epochs=args.qat_epochs, search=search)
    return Built(pipeline, root, os.path.join(root, "metadata.sqlite"))


def build_penguin(args) -> Built:
    import shutil
    from pipelines.penguin import PROCESSED_CSV, create_pipeline, write_processed_csv
    if args.data and not os.path.isfile(args.data):
        raise ConfigError(f"--data {args.data}: no such file (a CSV laid out as TFX's "
                          "penguins_processed.csv; leave --data out to make it from palmerpenguins)")

    def write_data(d):
        target = os.path.join(d, PROCESSED_CSV)
        if args.data:
            shutil.copy(args.data, target)
        else:
            write_processed_csv(target)
    return _build_example(
        args, write_data,
        lambda root, d, gate: create_pipeline(*_paths(root, d), qat_epochs=args.qat_epochs,
                                              eval_config=gate))


def _build_example(args, write_data, create) -> Built:
    """An example pipeline under ``args.output_root``: ``write_data(data_root)`` lays its data
    (once, for a DAG file), ``create(root, data_root, eval_config)`` defines it."""
    eval_config = _eval_config_file(args.eval_config)
    root = os.path.abspath(args.output_root)
    data_root = os.path.join(root, "data")
    if not (getattr(args, "reuse_data", False) and os.path.isdir(data_root)
            and os.listdir(data_root)):
        os.makedirs(data_root, exist_ok=True)
        write_data(data_root)
    return Built(create(root, data_root, eval_config), root, os.path.join(root, "metadata.sqlite"))


def _paths(root: str, data_root: str):
    return (os.path.join(root, "pipeline_root"), data_root, os.path.join(root, "serving"),
            os.path.join(root, "metadata.sqlite"))


def build_wide_deep(args) -> Built:
    from pipelines import wide_deep
    return _build_example(
        args, lambda d: wide_deep.write_csv(os.path.join(d, "penguins.csv")),
        lambda root, d, gate: wide_deep.create_pipeline(
            *_paths(root, d), qat_epochs=args.qat_epochs, gate=gate,
            enable_cache=not args.no_cache))


def build_taxi(args) -> Built:
    import shutil
    from pipelines import taxi
    return _build_example(
        args, lambda d: shutil.copy(taxi.data_csv(), os.path.join(d, "data.csv")),
        lambda root, d, gate: taxi.create_pipeline(
            *_paths(root, d), train_steps=args.train_steps, qat_epochs=args.qat_epochs,
            eval_config=gate, enable_cache=not args.no_cache))


def cmd_compile_kfp(args) -> int:
    from pipelines.data import builtin_spec
    from pipelines.kubeflow_v2_runner import compile_kfp_v2
    from quant_lib.config import DataSpec
    try:
        if args.dataset:
            spec = builtin_spec(args.dataset)
        elif args.num_classes and args.image_shape:
            spec = DataSpec(image_key=args.image_key, label_key=args.label_key,
                            image_shape=args.image_shape, num_classes=args.num_classes,
                            image_scale=args.image_scale or 1.0)
        else:
            raise ConfigError("compile-kfp needs --dataset NAME, or --num-classes N and "
                              "--image-shape H,W,C describing your TFRecords")
        root = args.output_root if "://" in args.output_root else os.path.abspath(args.output_root)
        settings = _settings(args, args.name, root, args.data_root, spec)
        out_dir, out_file = os.path.split(os.path.abspath(args.output))
        job = compile_kfp_v2(settings, image=args.image, output_dir=out_dir,
                             output_filename=out_file, allow_local_paths=args.allow_local_paths)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tasks = sorted(job["pipelineSpec"]["root"]["dag"]["tasks"])
    print(f"KFP v2 pipeline spec written to {args.output} ({len(tasks)} tasks: {', '.join(tasks)})")
    print(f"pipeline root: {settings.pipeline_root}; image: {args.image}")
    return 0


def cmd_lineage(args) -> int:
    import json
    from pipelines.lineage import format_lineage, pushed_model_lineage
    path = args.root
    if os.path.isdir(path):
        path = os.path.join(path, "metadata.sqlite")
    if not os.path.isfile(path):
        print(f"error: no MLMD database at {path}; pass the pipeline output root (the folder "
              "holding metadata.sqlite) or the SQLite file itself", file=sys.stderr)
        return 2
    records = pushed_model_lineage(path)
    print(json.dumps(records, indent=2) if args.json else format_lineage(records))
    return 0


def cmd_experiments(args) -> int:
    from pipelines import experiments
    if not args.root and not args.mlmd_config:
        print("error: pass ROOT (pipeline output root or MLMD SQLite file) or --mlmd-config",
              file=sys.stderr)
        return 2
    try:
        return experiments.main_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


BUILDERS = {"run": build_run, "penguin": build_penguin, "tabular": build_tabular,
            "wide-deep": build_wide_deep, "taxi": build_taxi}


def build_pipeline(argv, reuse_data: bool = False) -> Built:
    """The pipeline a ``run``/``penguin``/``tabular``/``wide-deep``/``taxi`` command line defines,
    not run: for orchestrators that run it themselves (the Airflow DAG). ``reuse_data``: keep data
    already laid under the output root (a DAG file is parsed every few seconds). Bad arguments or
    input raise ConfigError (IngestionError/DataError for data) before anything runs."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as e:  # argparse printed the reason to stderr
        raise ConfigError(f"{' '.join(argv)!r} is not a valid tfx-qat command line "
                          f"(see stderr; python -m pipelines.cli --help)") from e
    if args.command not in BUILDERS:
        raise ConfigError(f"{args.command!r} does not define a pipeline: use one of "
                          f"{sorted(BUILDERS)}")
    args.reuse_data = reuse_data
    return BUILDERS[args.command](args)


def cmd_pipeline(args) -> int:
    """Builds the command's pipeline (bad input: exit 2) and runs it with LocalDagRunner."""
    from pipelines.data import IngestionError
    from pipelines.runner import run_pipeline
    from quant_lib.data import DataError
    try:
        built = BUILDERS[args.command](args)
    except (IngestionError, DataError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return _run_and_print(lambda: run_pipeline(built.pipeline, built.output_root,
                                               built.metadata_path), args)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.command in BUILDERS else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    if args.command in BUILDERS:
        return cmd_pipeline(args)
    return {"compile-kfp": cmd_compile_kfp, "lineage": cmd_lineage,
            "experiments": cmd_experiments, "edgetpu-analyze": cmd_edgetpu_analyze,
            "edgetpu-log": cmd_edgetpu_log}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
