"""tfx-qat's import root. The product lives in the repository's top-level folders
``quant_lib/``, ``components/`` and ``pipelines/``; setup.py installs them (editable or not) as
``tfx_qat.quant_lib``, ``tfx_qat.components`` and ``tfx_qat.pipelines``, so a team's own
``components`` or ``pipelines`` package in the same image or process is never shadowed.

TFMOT quantizes Keras-2 (tf_keras) models only, so the legacy-Keras switch must be set before
TensorFlow is first imported anywhere in the process: importing any part of tfx-qat sets it."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
PACKAGES = ("quant_lib", "components", "pipelines")


def old_name_guard(name: str) -> None:
    """Raised from a product folder imported by its old top-level name (a checkout on sys.path):
    it names the import path that works, instead of loading a second copy of the modules."""
    short = name.split(".")[-1]
    if name != f"tfx_qat.{short}":
        raise ImportError(f"tfx-qat's {short!r} package is imported as 'tfx_qat.{short}' (e.g. "
                          f"'from tfx_qat.{short} import ...'); the top-level name {short!r} is "
                          "left to your own project. Reinstall tfx-qat if 'tfx_qat' is missing.")
