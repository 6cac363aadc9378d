"""tfx-qat command line: ``python -m tfx_qat.pipelines.cli run [--dataset ... | --csv ... |
--tfrecords ...]``; the flags and exit codes: ``cli_flags``."""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, NamedTuple, Optional

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfx_qat.pipelines.cli_flags import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_NOT_BLESSED,
                                         build_parser)
from tfx_qat.quant_lib.config import (ConfigError, EvalConfig, ExportConfig, QuantizationConfig,
                                      SearchConfig, Threshold)


class Built(NamedTuple):
    """A pipeline a command line defines, and where its run writes (summary.json, MLMD)."""
    pipeline: Any
    output_root: str
    metadata_path: str


def cmd_edgetpu_analyze(args) -> int:
    import json
    from tfx_qat.quant_lib.tflite import edgetpu
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
    from tfx_qat.quant_lib.tflite import edgetpu_log
    with open(args.log, encoding="utf-8", errors="replace") as f:
        print(json.dumps(edgetpu_log.parse(f.read()).to_dict(), indent=2))
    return 0


def _prepare_data(args, data_root: str):
    from tfx_qat.pipelines import data
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
        return data_root, data.ingest_csv(data_root, args.csv, args.csv_eval, data.CsvLayout(
            args.label_column, args.image_shape, args.num_classes))
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
    from tfx_qat.components.quant_evaluator.component import check_one_gate
    from tfx_qat.pipelines.pipeline import DEFAULT_BEAM_ARGS, PipelineSettings
    from tfx_qat.quant_lib.evaluation import gate
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
    from tfx_qat.pipelines.data import BUILTIN_LABELS
    builtin = not (getattr(args, "csv", None) or getattr(args, "tfrecords", None))
    return BUILTIN_LABELS.get(getattr(args, "dataset", None), ()) if builtin else ()


def build_run(args) -> Built:
    name = "csv" if args.csv else "tfrecords" if args.tfrecords else args.dataset
    root = os.path.abspath(args.output_root or os.path.join("runs", name))
    data_root, spec = _prepare_data(args, os.path.join(
        root, "data" if args.search_budget_pt is None else "data_with_validation"))
    settings = _settings(args, f"tfx-qat-{name.replace('_', '-')}", root, data_root, spec)
    from tfx_qat.pipelines.pipeline import create_pipeline
    return Built(create_pipeline(settings), root, settings.metadata_path)


def _run_and_print(run, args) -> int:
    """Runs a pipeline (``run()`` returns its summary); a failed component is one line, exit 1;
    NOT blessed is exit 3 with ``--fail-if-not-blessed``."""
    from tfx_qat.pipelines.runner import PipelineFailed, print_summary
    try:
        summary, path = run()
    except PipelineFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print_summary(summary, path)
    if getattr(args, "fail_if_not_blessed", False) and not summary.blessed:
        print(f"NOT blessed (exit {EXIT_NOT_BLESSED}, --fail-if-not-blessed): "
              f"{'; '.join(summary.blessing_reasons or ['no blessing recorded'])}",
              file=sys.stderr)
        return EXIT_NOT_BLESSED
    return 0


def _eval_config_file(path: Optional[str]):
    """The tfma.EvalConfig in FILE (text proto or JSON); ConfigError naming the flag."""
    if path is None:
        return None
    from tfx_qat.quant_lib.evaluation import gate
    if not os.path.isfile(path):
        raise ConfigError(f"--eval-config {path}: no such file")
    with open(path) as f:
        try:
            return gate.parse_eval_config(f.read())
        except ConfigError as e:
            raise ConfigError(f"--eval-config {path}: {e}") from e


def build_tabular(args) -> Built:
    from tfx_qat.pipelines import tabular
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
    from tfx_qat.pipelines.penguin import PROCESSED_CSV, create_pipeline, write_processed_csv
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
    from tfx_qat.pipelines import wide_deep
    return _build_example(
        args, lambda d: wide_deep.write_csv(os.path.join(d, "penguins.csv")),
        lambda root, d, gate: wide_deep.create_pipeline(
            *_paths(root, d), qat_epochs=args.qat_epochs, gate=gate,
            enable_cache=not args.no_cache))


def build_taxi(args) -> Built:
    import shutil
    from tfx_qat.pipelines import taxi
    return _build_example(
        args, lambda d: shutil.copy(taxi.data_csv(), os.path.join(d, "data.csv")),
        lambda root, d, gate: taxi.create_pipeline(
            *_paths(root, d), train_steps=args.train_steps, qat_epochs=args.qat_epochs,
            eval_config=gate, enable_cache=not args.no_cache))


def cmd_compile_kfp(args) -> int:
    from tfx_qat.pipelines.data import builtin_spec
    from tfx_qat.pipelines.kubeflow_v2_runner import compile_kfp_v2
    from tfx_qat.quant_lib.config import DataSpec
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
    from tfx_qat.pipelines.lineage import format_lineage, pushed_model_lineage
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
    from tfx_qat.pipelines import experiments
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
                          f"(see stderr; python -m tfx_qat.pipelines.cli --help)") from e
    if args.command not in BUILDERS:
        raise ConfigError(f"{args.command!r} does not define a pipeline: use one of "
                          f"{sorted(BUILDERS)}")
    args.reuse_data = reuse_data
    return BUILDERS[args.command](args)


def cmd_pipeline(args) -> int:
    """Builds the command's pipeline (bad input: exit 2) and runs it with LocalDagRunner."""
    from tfx_qat.pipelines.data import IngestionError
    from tfx_qat.pipelines.runner import run_pipeline
    from tfx_qat.quant_lib.examples.data import DataError
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
