# The image every Kubeflow Pipelines v2 / Vertex AI step of a tfx-qat pipeline runs in:
#   make image IMAGE=<registry>/tfx-qat:0.1.0   (docker or podman), push it, then
#   python -m tfx_qat.pipelines.cli compile-kfp --image <registry>/tfx-qat:0.1.0 ...   (README "Deploying")
#   make image-check                            builds it with podman and runs a pipeline inside
#
# Base: Debian 12's CPython 3.10 slim image. Debian 12 has the glibc (2.36) tfx-qat's stack was
# measured on, and constraints.txt pins that stack exactly (TF 2.16, TFX 1.16.0, TFMOT 0.8, TFMA
# 0.47, Beam 2.61, tflite-support 0.4.4). TFX's own gcr.io/tfx-oss-public/tfx:1.16.0 would bring
# its own TF/Beam builds, unpinned against ours, and several GB more.
ARG BASE=python:3.10-slim-bookworm

# Build stage: a compiler (pyfarmhash, a TFX dependency, is published as source only) and the
# venv. Only the venv goes on to the final image.
FROM ${BASE} AS build
ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/tfx-qat
COPY scripts/install.sh scripts/install.sh
RUN scripts/install.sh system
COPY setup.py setup.cfg constraints.txt README.md ./
COPY tfx_qat tfx_qat
COPY quant_lib quant_lib
COPY components components
COPY pipelines pipelines
# The kfp extra: TFX's KFP v2 container entrypoint reads the pipeline-spec protos.
RUN python -m venv /opt/venv \
 && scripts/install.sh python /opt/venv/bin/python kfp \
 && scripts/install.sh trim /opt/venv

FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 \
    TF_USE_LEGACY_KERAS=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
WORKDIR /opt/tfx-qat
COPY scripts/install.sh scripts/install.sh
RUN scripts/install.sh runtime && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
# What the KFP steps import, as they import it: TFX's v2 entrypoint and every tfx-qat component
# (with TF and the TFLite metadata writers) in one process; tflite-support's Task Library, an
# app's runtime, only in a process without TensorFlow (its pybind types clash with TF 2.16's).
RUN python -c "import tfx, tfx_qat.quant_lib, tfx_qat.components, tfx_qat.pipelines.cli, tfx_qat.pipelines.kfp_entrypoint; \
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor; \
from tfx_qat.components.quantize_trainer import executor; from tfx_qat.components.integer_exporter import executor; \
from tfx_qat.components.quant_evaluator import executor; from tfx_qat.components.verified_pusher import executor; \
from tensorflow_lite_support.metadata.python.metadata_writers import image_classifier; \
import ai_edge_litert.interpreter" \
 && python -c "import sys; sys.modules['tensorflow'] = None; \
from tflite_support.task import vision; from tflite_support import metadata"

# KFP v2 tasks set their own command (TFX's kubeflow_v2_run_executor); run by hand, the CLI.
ENTRYPOINT ["tfx-qat"]
CMD ["--help"]
