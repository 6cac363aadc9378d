"""tfx-qat pipelines: data ingestion, the pipeline definition, runners and the CLI."""
import quant_lib  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
