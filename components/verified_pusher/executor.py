"""VerifiedPusher executor: TFX's Pusher, plus the checks that make a wrong push impossible.

The stock Pusher pushes when the blessing is missing ("without validation") and copies straight into
the serving directory, so a crash mid-copy leaves a half-written version a model server may load.
Here: no blessing input -> error; blessing without ``blessed=1`` -> not pushed; the model's bytes
must hash to the sha256 QuantEvaluator recorded for the bytes it evaluated (before and after the
copy); the copy lands in a hidden temporary directory and is renamed into place only when verified.
"""
import hashlib
import logging
import os
import time
from typing import Any, Dict, List

from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import standard_component_specs as tss
from tfx.utils import io_utils, proto_utils

from components import keys
from components.utils import read_record, set_properties, single
from quant_lib import model_card, records

log = logging.getLogger(__name__)


class PushRefusedError(RuntimeError):
    """The model was not pushed, for a reason a person must act on."""


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with fileio.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Executor(pusher_executor.Executor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        pushed = single(output_dict, tss.PUSHED_MODEL_KEY)
        set_properties(pushed, records.Pushed(pushed=False))
        if not input_dict.get(tss.MODEL_BLESSING_KEY):
            raise PushRefusedError(
                "VerifiedPusher got no model_blessing: wire model_blessing=QuantEvaluator's "
                "outputs['blessing']; tfx-qat never pushes a model that was not evaluated")
        blessing = single(input_dict, tss.MODEL_BLESSING_KEY)
        rec = read_record(blessing, records.Blessing)
        if not rec.blessed:
            log.warning("not pushing: blessing %s is not blessed=1 (reasons: %s)", blessing.uri,
                        rec.blessing_reasons or "none recorded")
            return
        model = single(input_dict, tss.MODEL_KEY)
        expected = rec.int8_sha256
        if not expected:
            raise PushRefusedError(f"blessing {blessing.uri} has no evaluated int8 sha256: it was "
                                   "not written by QuantEvaluator; re-run QuantEvaluator")
        model_dir = self.GetModelPath(input_dict)
        actual = sha256_file(os.path.join(model_dir, keys.TFLITE_FILE))
        if actual != expected:
            raise PushRefusedError(
                f"model {model.uri} (sha256 {actual}) is not the model QuantEvaluator blessed "
                f"(sha256 {expected}); refusing to push. Re-run QuantEvaluator on this model")
        dest = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[tss.PUSH_DESTINATION_KEY], dest)
        if dest.WhichOneof("destination") != "filesystem":
            raise PushRefusedError("VerifiedPusher supports push_destination.filesystem only")
        base = dest.filesystem.base_directory
        card = [os.path.join(blessing.uri, name) for name in (model_card.JSON_FILE,
                                                              model_card.MD_FILE)]
        serving_path, version = self._push(model_dir, base, expected,
                                           [p for p in card if fileio.exists(p)])
        io_utils.copy_dir(model_dir, pushed.uri)  # archive copy, as the stock Pusher keeps
        self._MarkPushed(pushed, pushed_destination=serving_path, pushed_version=version)
        set_properties(pushed, records.Pushed(pushed_sha256=expected))
        log.info("pushed verified int8 model (sha256 %s) to %s", expected, serving_path)

    def _push(self, model_dir: str, base: str, sha: str, beside: List[str]):
        """Copies the model directory (model, labels.txt) and the ``beside`` files (the model
        card) as one version."""
        version = int(time.time())
        try:
            fileio.makedirs(base)
            while fileio.exists(os.path.join(base, str(version))):
                version += 1
            final = os.path.join(base, str(version))
            local = "://" not in base
            # Local: copy to a hidden directory, verify, rename (atomic). Object stores have no
            # atomic directory rename: copy in place, verify, delete on mismatch.
            target = os.path.join(base, f".{version}.incomplete") if local else final
            io_utils.copy_dir(model_dir, target)
            for path in beside:
                fileio.copy(path, os.path.join(target, os.path.basename(path)))
        except Exception as e:  # OSError locally, tf.errors.OpError on other filesystems
            raise PushRefusedError(
                f"push_destination.filesystem.base_directory {base!r} is not writable ({e}); fix "
                "its permissions or point the Pusher at a directory this job can write") from e
        copied = sha256_file(os.path.join(target, keys.TFLITE_FILE))
        if copied != sha:
            fileio.rmtree(target)
            raise PushRefusedError(f"copy at {target} hashes to {copied}, not {sha}; push removed")
        if local:
            fileio.rename(target, final)
        return final, str(version)
