"""A warm process for the KFP stand-ins' task containers (tests/kfp_launcher.py): it imports once
what every task command imports (TFX's v2 entrypoint with TensorFlow, Beam, TFT, TFMA and
tfx-qat's executors: ~6 s of CPU per process on 2 cores), then forks one child per task, which
runs the container command's module as ``__main__`` with the task's arguments, environment,
working directory and log — what ``python -m MODULE ARGS`` does, without the imports.

The parent never runs a TensorFlow op, opens a file system or a connection, so a child starts
as a fresh process that has only imported modules would. ``KFP_STANDIN_FORK=0`` runs every
task as its own ``python -m`` process instead.

Protocol: one JSON request per line on stdin ({"module", "args", "env", "cwd", "log",
"timeout"}), one JSON reply per line on stdout ({"code": exit code}).
"""
import importlib
import json
import os
import sys

WARM = ("tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor",
        "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver",
        "tfx_qat.pipelines.kfp_entrypoint", "tfx.components", "tensorflow_transform",
        "tensorflow_model_analysis", "tfx_qat.components.quantize_trainer.executor",
        "tfx_qat.components.integer_exporter.executor",
        "tfx_qat.components.quant_evaluator.executor",
        "tfx_qat.components.verified_pusher.executor")


def _child(request) -> None:
    """Runs the task's module as __main__ in this (forked) process; never returns."""
    code = 1
    try:
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        import signal
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(int(request["timeout"]))  # as subprocess.run(timeout=...) would end it
        import logging
        import runpy
        import warnings
        # Logging as a fresh process has it before its first import configures any: the
        # module's own basicConfig (INFO for tfx-qat's entrypoint) then takes effect.
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=r".*found in sys\.modules", category=RuntimeWarning)
        sys.argv = [request["module"]] + list(request["args"])
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001  (what `python -m` prints and exits 1 with)
        import traceback
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve() -> None:
    for module in WARM:
        importlib.import_module(module)
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")


if __name__ == "__main__":
    serve()
