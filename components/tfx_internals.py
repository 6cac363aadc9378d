"""The one seam between tfx-qat's components and pipelines and what TFX 1.16 does not publish
(quant_lib's is tfx_qat.quant_lib.internals; quant_lib never imports TFX). Each entry names what it
relies on, checked against TFX 1.16.0; ``check()`` says what an upgrade removed, and
tests/test_internals.py greps the product for private access outside the two seams."""
from __future__ import annotations

from typing import List

PINNED = {"tfx": "1.16.0"}


def trainer_fn_args(input_dict, output_dict, exec_properties):
    """The FnArgs TFX's Trainer hands a module's run_fn
    (``tfx.components.trainer.executor.GenericExecutor._GetFnArgs``): QuantizeTrainer trains the
    float model with the user's own run_fn exactly as their Trainer would."""
    from tfx.components.trainer.executor import GenericExecutor
    return GenericExecutor()._GetFnArgs(  # pylint: disable=protected-access
        input_dict, output_dict, exec_properties)


def execution_id(context):
    """The MLMD execution id TFX's launchers pass an executor as its context's unique id
    (``BaseExecutor.Context._unique_id``; no public accessor); None outside a run."""
    return getattr(context, "_unique_id", None)


def record_failure(execution, error: BaseException) -> bool:
    """``error`` stored on a failed MLMD execution as TFX's launcher stores an executor's
    ExecutionResult (``tfx.orchestration.portable.mlmd.execution_lib``, get/set_execution_result),
    unless one is there; True when stored."""
    from tfx.orchestration.portable.mlmd import execution_lib
    from tfx.proto.orchestration import execution_result_pb2
    if execution_lib.get_execution_result(execution, ignore_parse_errors=True) is not None:
        return False
    execution_lib.set_execution_result(execution_result_pb2.ExecutionResult(
        code=2, result_message=f"{type(error).__name__}: {error}"), execution)
    return True


def check() -> List[str]:
    """What the installed TFX no longer has that an entry relies on (empty: all there)."""
    import tfx
    from tfx.components.trainer.executor import GenericExecutor
    from tfx.dsl.components.base import base_executor
    from tfx.orchestration.portable.mlmd import execution_lib
    where = f"(checked against {PINNED}; installed tfx {tfx.__version__})"
    problems = []
    if not hasattr(GenericExecutor, "_GetFnArgs"):
        problems.append(f"GenericExecutor._GetFnArgs is gone {where}")
    for name in ("get_execution_result", "set_execution_result"):
        if not hasattr(execution_lib, name):
            problems.append(f"execution_lib.{name} is gone {where}")
    if not hasattr(base_executor.BaseExecutor.Context(), "_unique_id"):
        problems.append(f"BaseExecutor.Context._unique_id is gone {where}")
    return problems
