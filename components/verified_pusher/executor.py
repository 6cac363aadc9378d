"""VerifiedPusher executor: TFX's Pusher, plus the checks that make a wrong push impossible.

The stock Pusher pushes when the blessing is missing ("without validation") and copies straight into
the serving directory, so a crash mid-copy leaves a half-written version a model server may load.
Here: no blessing input -> error; blessing without ``blessed=1`` -> not pushed; the model's bytes
must hash to the sha256 QuantEvaluator recorded for the bytes it evaluated (before and after each
copy); ``publish`` makes the version appear complete or not at all, on local disks and object stores.
"""
import logging
import os
from typing import Any, Dict, List

from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import standard_component_specs as tss
from tfx.utils import io_utils, proto_utils

from tfx_qat.components import keys
from tfx_qat.components.utils import read_record, set_properties, single
from tfx_qat.components.verified_pusher import publish
from tfx_qat.quant_lib.artifacts import records
from tfx_qat.quant_lib.reports import model_card

log = logging.getLogger(__name__)


class PushRefusedError(RuntimeError):
    """The model was not pushed, for a reason a person must act on."""


class Executor(pusher_executor.Executor):
    """Pushes the blessed int8 model, only if its bytes hash to the evaluated sha256.

    input_dict: ``model`` (IntegerExporter's quantized Model), ``model_blessing``
    (QuantEvaluator's blessing; required); TFX PusherSpec's ``infra_blessing`` is not read.
    output_dict: ``pushed_model`` (PushedModel: records.Pushed, destination and version).
    exec_properties: ``push_destination`` (a PushDestination: filesystem base directory, local,
    ``gs://`` or ``s3://``); ``custom_config`` is not read.
    """

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
        actual = publish.sha256_file(os.path.join(model_dir, keys.TFLITE_FILE))
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
        try:
            publish.prepare(base)
            self._stage(model_dir, [p for p in card if fileio.exists(p)], pushed.uri, expected)
            serving_path, version = publish.publish(pushed.uri, base, keys.TFLITE_FILE, expected)
        except publish.PushError as e:
            if fileio.exists(pushed.uri):  # the PushedModel holds nothing it did not push
                fileio.rmtree(pushed.uri)
                fileio.makedirs(pushed.uri)
            raise PushRefusedError(f"push to push_destination.filesystem.base_directory {base!r} "
                                   f"failed: {e}") from e
        self._MarkPushed(pushed, pushed_destination=serving_path, pushed_version=version)
        set_properties(pushed, records.Pushed(pushed_sha256=expected))
        log.info("pushed verified int8 model (sha256 %s) to %s; %s names it", expected,
                 serving_path, os.path.join(base, publish.LATEST_FILE))

    @staticmethod
    def _stage(model_dir: str, beside: List[str], staging: str, sha: str) -> None:
        """The PushedModel artifact's own directory (outside the push base, unique to this
        execution) receives the model directory and the model card, and is read back; it is then
        the source of the published version and stays as the archive copy, as TFX's Pusher's."""
        io_utils.copy_dir(model_dir, staging)
        for path in beside:
            fileio.copy(path, os.path.join(staging, os.path.basename(path)), overwrite=True)
        copied = publish.sha256_file(os.path.join(staging, keys.TFLITE_FILE))
        if copied != sha:
            raise publish.PushError(f"the staged copy {staging} hashes to {copied}, not {sha}")
