"""Framework-free quantization logic for tfx-qat (numpy / TF / TFMOT / TFLite; never TFX).

TFMOT quantizes Keras-2 (tf_keras) models only, so the legacy-Keras switch must be set before
TensorFlow is first imported anywhere in the process. Importing this package sets it.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
