"""The tfx-qat command line's flags and exit codes (argparse): one parser for the pipeline
commands (run, penguin, tabular, wide-deep, taxi) and the tools (compile-kfp, lineage,
experiments, edgetpu-analyze, edgetpu-log); ``cli`` runs what it parses."""
from __future__ import annotations

import argparse
import os

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfx_qat.quant_lib.config import MOVES


VALIDATION_FRACTION = 1 / 12  # of the training images, when --search-budget-pt asks for a split


# Exit codes of the pipeline commands (README "Not blessed?"): 0 ran (blessed, or not blessed
# without --fail-if-not-blessed), 1 a component failed, 2 bad input before the run, 3 ran and the
# int8 model was NOT blessed (with --fail-if-not-blessed).
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_BLESSED = 1, 2, 3


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
