"""Channel, exec-property and file names, defined once for all components (artifact properties:
tfx_qat.quant_lib.artifacts.records)."""

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
PLATFORM_METRICS = "metrics"       # QuantEvaluator: scalars typed system.Metrics (KFP, Vertex)
CONFUSION_MATRIX = "confusion_matrix"  # QuantEvaluator: int8's, typed system.ClassificationMetrics
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
BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"

# QuantizeTrainer, for a rebuilt float model: where it saves that model as a Keras SavedModel, so
# IntegerExporter can convert a float TFLite reference (size, latency) for any Trainer's model.
FLOAT_KERAS_DIR = "float_keras"

# Artifact (MLMD custom) properties: one typed record per artifact in quant_lib/artifacts/records.py.
