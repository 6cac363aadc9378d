"""Framework-free quantization logic for tfx-qat (numpy / TF / TFMOT / TFLite; never TFX),
imported as ``tfx_qat.quant_lib`` (whose root sets the legacy-Keras switch TFMOT needs)."""
import tfx_qat

tfx_qat.old_name_guard(__name__)
