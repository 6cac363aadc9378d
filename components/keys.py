"""Channel, exec-property, file and custom-property names, defined once for all components."""

# Channels (inputs/outputs) and the one exec property each component takes.
EXAMPLES = "examples"
SCHEMA = "schema"
STATISTICS = "statistics"  # StatisticsGen output: data checks without a pass over the split
BASE_MODEL = "base_model"          # float Model from the stock Trainer
MODEL = "model"                    # input: QAT Model (IntegerExporter), float Model (QuantEvaluator)
# QuantizeTrainer's output. Not "model": TFX's legacy driver (Airflow) names artifacts
# "<output key>:<run id>" per type, so it would collide with the stock Trainer's "model" output.
QAT_MODEL = "qat_model"
QUANTIZED_MODEL = "quantized_model"  # full-integer TFLite Model (IntegerExporter out)
BASELINE_MODEL = "baseline_model"  # latest blessed int8 Model (LatestBlessedModelStrategy)
BLESSING = "blessing"
EVALUATION = "evaluation"
CONFIG = "config"
EVAL_CONFIG = "eval_config"        # QuantEvaluator: optional tfma.EvalConfig (TFX Evaluator's key)

# Files inside artifacts. TFMA and TFX's TFLiteRewriter read a TFLite model from
# <Model uri>/Format-Serving/tflite; the stock Pusher pushes the whole Format-Serving dir.
TFLITE_FILE = "tflite"
FLOAT_REFERENCE_TFLITE = "float_reference/model_float.tflite"
QAT_REPORT_FILE = "qat_report.json"
EXPORT_REPORT_FILE = "export_report.json"
EDGETPU_DIR = "edgetpu"  # analysis (json + md), compiled model and compiler log
EDGETPU_ANALYSIS_JSON = "edgetpu/analysis.json"
EDGETPU_ANALYSIS_MD = "edgetpu/analysis.md"
EDGETPU_COMPILE_JSON = "edgetpu/compile.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"        # QuantEvaluator: self-contained HTML run report
P_REPORT_STATUS = "report_status"  # written | failed: <error> (the push does not depend on it)
BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"

# Custom properties (MLMD) read by the run summary, lineage tools and the stock Pusher.
P_BLESSED = "blessed"              # int 1/0: the key the stock Pusher checks
P_CURRENT_MODEL = "current_model"
P_CURRENT_MODEL_ID = "current_model_id"
P_FLOAT_ACCURACY = "float_accuracy"
P_INT8_ACCURACY = "int8_accuracy"
P_DELTA_PT = "accuracy_delta_pt"
P_REASONS = "blessing_reasons"
P_EVAL_EXAMPLES = "eval_examples"
# MLMD stores float properties with ~6 significant digits; exact counts let readers recompute.
P_FLOAT_CORRECT = "float_correct"
P_INT8_CORRECT = "int8_correct"
P_INT8_SHA256 = "int8_sha256"
P_PUSHED = "pushed"                # int 1/0, as the stock Pusher writes
P_PUSHED_SHA256 = "pushed_sha256"  # VerifiedPusher: sha256 of the bytes that were pushed
P_BASELINE_ACCURACY = "baseline_int8_accuracy"
P_BASELINE_CHECK = "baseline_check"  # passed | failed | skipped: why
P_INT8_LATENCY_MS = "int8_latency_ms"    # TFLite, 1 thread, batch 1, default XNNPACK delegate
P_FLOAT_LATENCY_MS = "float_latency_ms"
P_INT8_XNNPACK = "int8_xnnpack"    # how XNNPACK takes the model: ops delegated, partitions, rest
P_FLOAT_XNNPACK = "float_xnnpack"
P_INT8_BYTES = "int8_tflite_bytes"
P_FLOAT_BYTES = "float_tflite_bytes"
P_VALIDATED = "integer_validated"
P_OP_COUNTS = "op_counts"
P_INPUT_DTYPE = "input_dtype"
P_INPUT_CONTRACT = "input_contract"  # JSON: [{name, dtype, shape, scale, zero_point}] by input name
P_FLOAT_MODEL_SOURCE = "float_model_source"  # keras (loaded) | rebuilt (model_fn + checkpoint)
# QuantizeTrainer, for a rebuilt float model: where it saved that model as a Keras SavedModel, so
# IntegerExporter can convert a float TFLite reference (size, latency) for any Trainer's model.
P_FLOAT_KERAS_MODEL = "float_keras_model"
FLOAT_KERAS_DIR = "float_keras"
P_PARITY_AGREEMENT = "parity_top1_agreement"
P_PARITY_MAX_ABS_ERR = "parity_max_abs_error"
P_ACTIVATIONS = "activations"
P_ETPU_PRED_TPU = "edgetpu_predicted_ops_on_tpu"
P_ETPU_PRED_CPU = "edgetpu_predicted_ops_on_cpu"
P_ETPU_FIRST_UNMAPPED = "edgetpu_predicted_first_unmapped"
P_ETPU_STATUS = "edgetpu_compiler_status"  # compiled | not_available | failed | timeout | skipped
P_ETPU_MESSAGE = "edgetpu_compiler_message"
P_ETPU_VERSION = "edgetpu_compiler_version"
P_ETPU_OPS_TPU = "edgetpu_ops_on_tpu"
P_ETPU_OPS_CPU = "edgetpu_ops_on_cpu"
P_ETPU_SUBGRAPHS = "edgetpu_subgraphs"
P_ETPU_ON_CHIP = "edgetpu_on_chip_bytes"
P_ETPU_OFF_CHIP = "edgetpu_off_chip_bytes"
P_ETPU_BYTES = "edgetpu_tflite_bytes"
P_QAT_SECONDS_PER_STEP = "qat_seconds_per_step"
P_QAT_TRAIN_ACCURACY = "qat_final_train_accuracy"  # classifiers; regression: qat_final_train_mae
P_QUANTIZED_LAYERS = "quantized_layers"
P_FOLDED_LAYERS = "folded_layers"
P_QAT_SCHEME = "qat_scheme"
P_PER_TENSOR = "per_tensor"  # int 1/0; IntegerExporter converts per-tensor models per-tensor
P_FLOAT_LAYERS = "float_layers"
P_FLOAT_LAYER_NAMES = "float_layer_names"
