"""The seams to library internals (quant_lib/internals.py for TF / tf_keras / TFMOT / the TFLite
interpreter, components/tfx_internals.py for TFX): everything they rely on is there in the pinned
libraries, and no other product module reaches past a library's public API."""
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEAMS = {os.path.join("quant_lib", "internals.py"), os.path.join("components", "tfx_internals.py")}
# Non-public module paths, private names the product relies on, and the markers of reaching them.
PRIVATE = re.compile(
    r"(tensorflow|tensorflow_model_optimization)\.python\.|tensorflow\.lite\.(python|tools)\b|"
    r"\b(tf_)?keras\.src\b|"
    r"tfx\.orchestration\.portable|_pywrap|protected-access|"
    r"\._(get_ops_details|get_full_signature_list|experimental_\w+|inbound_nodes|input_layers|"
    r"nodes_by_depth|keras_history|GetFnArgs|unique_id|PRE_QUANT_ACTIVATIONS)\b|"
    r"getattr\([^,]+,\s*[\"']_(?!_)")


def _product_files():
    for package in ("quant_lib", "components", "pipelines"):
        for d, _, names in os.walk(os.path.join(ROOT, package)):
            for n in names:
                if n.endswith(".py"):
                    yield os.path.relpath(os.path.join(d, n), ROOT)


def test_no_private_access_outside_the_seams():
    found = []
    for rel in _product_files():
        if rel in SEAMS:
            continue
        with open(os.path.join(ROOT, rel)) as f:
            for i, line in enumerate(f, 1):
                code = line.split("#", 1)[0] if "protected-access" not in line else line
                if PRIVATE.search(code):
                    found.append(f"{rel}:{i}: {line.strip()}")
    assert not found, ("library internals reached outside quant_lib/internals.py and "
                       "components/tfx_internals.py (add an entry there):\n" + "\n".join(found))


def test_the_grep_catches_what_it_is_for():
    for line in ("ops = interp._get_ops_details()",
                 "from tensorflow.python.autograph.core import config",
                 "from tf_keras.src.saving.legacy import saving_utils",
                 'x = getattr(model, "_nested_inputs", None)',
                 "y = GenericExecutor()._GetFnArgs(a, b, c)"):
        assert PRIVATE.search(line), line
    for line in ("self._in = {}", 'getattr(loss, "__name__", None)', "tf.lite.Interpreter(x)"):
        assert not PRIVATE.search(line), line


def test_quant_lib_internals_hold_in_the_pinned_libraries():
    from tfx_qat.quant_lib import internals
    assert internals.check() == []


def test_tfx_internals_hold_in_the_pinned_tfx():
    from tfx_qat.components import tfx_internals
    assert tfx_internals.check() == []


def test_an_unlisted_internal_module_is_refused_by_name():
    from tfx_qat.quant_lib import internals
    with pytest.raises(KeyError, match="add it to tfx_qat.quant_lib.internals.MODULES"):
        internals.module("tensorflow.python.framework.ops")


def test_patches_are_installed_once():
    from tensorflow.python.autograph.core import config
    from tfx_qat.quant_lib import internals
    internals.install()
    n = len(config.CONVERSION_RULES)
    internals.install()
    assert len(config.CONVERSION_RULES) == n
    cls = internals.tfmot("quantize_aware_activation").QuantizeAwareActivation
    assert set(internals.PRE_AND_POST_QUANTIZED_ACTIVATIONS) <= cls._PRE_QUANT_ACTIVATIONS


@pytest.mark.parametrize("component", ["QuantizeTrainer", "IntegerExporter", "QuantEvaluator",
                                       "VerifiedPusher"])
def test_each_executor_documents_every_key_of_its_spec(component):
    """The input, output and exec-property keys Do receives, in the Executor's docstring (Do
    itself stays short: its logic lives in helpers and quant_lib)."""
    import tfx_qat.components as components
    cls = getattr(components, component)
    spec = cls.SPEC_CLASS
    doc = cls.EXECUTOR_SPEC.executor_class.__doc__ or ""
    missing = [k for k in (*spec.INPUTS, *spec.OUTPUTS, *spec.PARAMETERS) if f"``{k}``" not in doc]
    assert not missing, f"{component}'s Executor docstring does not name {missing}"
