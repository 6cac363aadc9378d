"""tfx-qat installs under one import root, ``tfx_qat``: a team's own ``components`` and
``pipelines`` packages (the names a pipeline repository very likely has) work beside it in one
process, and the old top-level names fail with the name to use."""
import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_user_project_with_its_own_components_and_pipelines_imports_both(tmp_path):
    for pkg in ("components", "pipelines"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(f"OWNER = 'team-{pkg}'\n")
    (tmp_path / "components" / "my_trainer.py").write_text("NAME = 'Trainer of the team'\n")
    proc = _python(
        "import components, pipelines, components.my_trainer as t\n"
        "from tfx_qat.components import QuantizeTrainer, qat_chain\n"
        "from tfx_qat.pipelines import kfp_entrypoint, kubeflow_v2_runner\n"
        "import tfx_qat.components as ours\n"
        "print(components.OWNER, pipelines.OWNER, t.NAME, QuantizeTrainer.__module__,\n"
        "      kfp_entrypoint.MODULE, ours.__file__, components.__file__, sep='|')\n", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (mine_c, mine_p, trainer, qt_module, entry, ours_file,
     theirs_file) = proc.stdout.strip().splitlines()[-1].split("|")
    assert (mine_c, mine_p, trainer) == ("team-components", "team-pipelines", "Trainer of the team")
    assert qt_module == "tfx_qat.components.quantize_trainer.component"
    assert entry == "tfx_qat.pipelines.kfp_entrypoint"  # the KFP container command's module
    assert os.path.dirname(ours_file) == os.path.join(ROOT, "components")
    assert os.path.dirname(theirs_file) == str(tmp_path / "components")


def test_the_old_top_level_names_fail_naming_the_new_one():
    """From a checkout (its root on sys.path) ``import components`` would load a second copy of
    tfx-qat's modules; it fails with the import path that works."""
    for pkg in ("components", "pipelines", "quant_lib"):
        proc = _python(f"import {pkg}", ROOT)
        assert proc.returncode == 1
        assert f"imported as 'tfx_qat.{pkg}'" in proc.stderr, proc.stderr[-2000:]


def test_the_wheel_holds_tfx_qat_only(tmp_path):
    """What ``pip install .`` (the Dockerfile) installs: every module under tfx_qat/, none at the
    top level of site-packages, and the console script on the new path."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--no-build-isolation", "-w", str(tmp_path), ROOT],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [wheel] = [f for f in os.listdir(tmp_path) if f.endswith(".whl")]
    with zipfile.ZipFile(tmp_path / wheel) as z:
        names = z.namelist()
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"tfx_qat"}, tops
    for module in ("tfx_qat/__init__.py", "tfx_qat/quant_lib/qat/plan.py",
                   "tfx_qat/components/quant_evaluator/executor.py",
                   "tfx_qat/pipelines/kfp_entrypoint.py", "tfx_qat/pipelines/modules/__init__.py"):
        assert module in names, module
    assert "tfx-qat = tfx_qat.pipelines.cli:main" in entry_points
