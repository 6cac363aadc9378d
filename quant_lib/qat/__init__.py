"""QAT planning and training (TFMOT on tf_keras): what a model may be (``keras2``), exact
rewrites before quantizing (``folds``, ``scale_fold``, ``graph``), which layer gets which
quantization (``plan``, ``layer_configs``), fine-tuning (``train``), writing and reading QAT
models (``saving``), and float models as TFX's Trainer writes them (``models``)."""
