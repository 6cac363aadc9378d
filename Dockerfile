# The image every Kubeflow Pipelines v2 / Vertex AI step of a tfx-qat pipeline runs in:
#   make image IMAGE=<registry>/tfx-qat:0.1.0   (docker or podman), push it, then
#   python -m pipelines.cli compile-kfp --image <registry>/tfx-qat:0.1.0 ...   (README "Deploying")
#
# Base: Debian 12's CPython 3.10 slim image. Debian 12 has the glibc (2.36) tfx-qat's stack was
# measured on, and constraints.txt pins that stack exactly (TF 2.16, TFX 1.16.0, TFMOT 0.8, TFMA
# 0.47, Beam 2.61, tflite-support 0.4.4). TFX's own gcr.io/tfx-oss-public/tfx:1.16.0 would bring
# its own TF/Beam builds, unpinned against ours, and several GB more.
FROM python:3.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 \
    TF_USE_LEGACY_KERAS=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/tfx-qat

# What the install needs, nothing dev-only (no tests, no benchmarks' results, no venv).
COPY scripts/install.sh scripts/install.sh
RUN scripts/install.sh system && rm -rf /var/lib/apt/lists/*
COPY setup.py setup.cfg constraints.txt README.md ./
COPY quant_lib quant_lib
COPY components components
COPY pipelines pipelines
# The kfp extra: TFX's KFP v2 container entrypoint reads the pipeline-spec protos.
RUN scripts/install.sh python python kfp \
 && python -c "import tfx, quant_lib, components, pipelines.cli, tflite_support; \
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor"

# KFP v2 tasks set their own command (TFX's kubeflow_v2_run_executor); run by hand, the CLI.
ENTRYPOINT ["tfx-qat"]
CMD ["--help"]
