# tfx-qat: the README's two commands are `make run` and `make test`; everything else is optional.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist
RUN_ROOT ?= runs/fashion_mnist
RUN_ARGS ?=
PYTEST_ARGS ?=
# Two pytest workers (pytest-xdist), one test file per worker at a time: most test time is process
# start-up, Beam and I/O, which a second worker overlaps. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
BENCH_ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: image image-check venv sysdeps run run-penguin run-wide-deep run-taxi run-digits run-breast-cancer run-diabetes test test-fast test-airflow airflow-venv bench bench-guard bench-scale readme data clean

venv: sysdeps $(STAMP)

# Debian packages the install needs (libusb-1.0-0 for tflite-support; gcc/g++ for pyfarmhash, a TFX
# dependency published as source only), installed when missing, or an error naming them; the same
# script installs the container image (Dockerfile).
sysdeps:
	@scripts/install.sh system

# Idempotent: the venv is rebuilt only when setup.py or constraints.txt change.
$(STAMP): setup.py constraints.txt scripts/install.sh | sysdeps
	@set -e; \
	if [ ! -x $(PY) ]; then \
	  py=""; \
	  for c in python3.10 $$(pyenv root 2>/dev/null)/versions/3.10*/bin/python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do \
	    if command -v "$$c" >/dev/null 2>&1 && "$$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then py="$$c"; break; fi; \
	  done; \
	  if [ -z "$$py" ]; then \
	    echo "ERROR: CPython 3.10 not found (tfx-qat needs it: TFX 1.16 wheels exist for 3.9/3.10 only)." >&2; \
	    echo "       Install it, e.g. 'pyenv install 3.10' or 'apt-get install python3.10 python3.10-venv', then re-run make." >&2; \
	    exit 1; \
	  fi; \
	  echo ">> creating $(VENV) with $$py ($$($$py --version))"; \
	  "$$py" -m venv $(VENV); \
	fi; \
	echo ">> installing tfx-qat and its pinned dependencies into $(VENV) (first time: about a minute with a download)"; \
	scripts/install.sh python $(PY) dev -e; \
	touch $(STAMP); \
	echo ">> $(VENV) ready"

# The container image every Kubeflow / Vertex step runs in (Dockerfile; docker or podman).
IMAGE ?= tfx-qat:0.1.0
image:
	@engine=$$(command -v docker || command -v podman) || { echo "ERROR: make image needs docker or podman" >&2; exit 1; }; \
	$$engine build -t $(IMAGE) . && echo ">> built $(IMAGE); push it to your registry and pass it to compile-kfp --image"

# Builds the image with podman (on a labelled local stand-in for python:3.10-slim-bookworm when that
# image is absent: debootstrap + this venv's CPython) and runs the CLI, TFX's KFP v2 entrypoint
# import and the digits pipeline inside it, with no network; size and build time to
# benchmarks/results/image_results.json, rendered into the README by `make readme`. Root; minutes.
image-check: venv
	scripts/image_check.sh $(PY)
	$(PY) -m benchmarks.readme

# Fashion-MNIST from the Debian package when possible (root + apt); else the CLI falls back to the
# Keras downloader (needs network).
data:
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo ">> installing Debian package dataset-fashion-mnist"; \
	  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; } || \
	  echo ">> could not install dataset-fashion-mnist; the pipeline will try the Keras downloader"; \
	fi

run: venv data
	$(PY) -m tfx_qat.pipelines.cli run --dataset fashion_mnist --output-root $(RUN_ROOT) $(RUN_ARGS)

# TFX's penguin example (Transform + its own Trainer module, unmodified) with tfx-qat added.
run-penguin: venv
	$(PY) -m tfx_qat.pipelines.cli penguin --output-root runs/penguin

# Binary (breast cancer) and regression (diabetes) heads on scikit-learn's bundled tabular data,
# each gated by a tfma.EvalConfig (AUC / MAE change thresholds against the float model);
# RUN_ARGS='--search-budget 1' adds the accuracy-aware search (PTQ first; MAE +1 % for diabetes).
run-breast-cancer: venv
	$(PY) -m tfx_qat.pipelines.cli tabular --dataset breast_cancer --output-root runs/breast_cancer $(RUN_ARGS)

run-diabetes: venv
	$(PY) -m tfx_qat.pipelines.cli tabular --dataset diabetes --output-root runs/diabetes $(RUN_ARGS)

# An everyday TFX tabular pipeline: CSV with empty cells, Transform (vocabulary, bucketize, z-score,
# the label), a dict-input wide-and-deep model whose run_fn passes builder arguments.
run-wide-deep: venv
	$(PY) -m tfx_qat.pipelines.cli wide-deep --output-root runs/wide_deep

# TFX's own Chicago taxi example (its module and data as installed with tfx, unmodified) + tfx-qat.
run-taxi: venv
	$(PY) -m tfx_qat.pipelines.cli taxi --output-root runs/taxi

run-digits: venv
	$(PY) -m tfx_qat.pipelines.cli run --dataset digits --output-root runs/digits $(RUN_ARGS)

# The Airflow tests (their own venv, one process) run beside the main suite and fill the CPU its
# workers leave idle; their output follows pytest's (runs/test-airflow.log); either failing fails.
test: venv data
	@mkdir -p runs; $(MAKE) -s test-airflow > runs/test-airflow.log 2>&1 & airflow=$$!; \
	rc=0; $(PY) -m pytest -q -ra -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15 $(PYTEST_ARGS) \
	  tests || rc=$$?; \
	airflow_rc=0; wait $$airflow || airflow_rc=$$?; \
	echo ">> make test-airflow (run beside pytest; log runs/test-airflow.log), exit $$airflow_rc:"; \
	if [ $$airflow_rc = 0 ]; then tail -n 3 runs/test-airflow.log; else cat runs/test-airflow.log; fi; \
	[ $$rc = 0 ] || exit $$rc; exit $$airflow_rc

# Benchmarks (not part of `make test`): runs/bench/bench.{json,md}; README's table is bench.md.
bench: venv data
	$(PY) -m benchmarks.bench --out runs/bench $(BENCH_ARGS)
	cp runs/bench/bench.json benchmarks/results/bench_results.json
	cp runs/bench/bench.md benchmarks/results/bench_results.md

# The class guard's block rates (no harm, at the tolerance, one class harmed) simulated on a finished
# run's per-class evidence (make run's Fashion-MNIST; seconds).
bench-guard: venv
	$(PY) -m benchmarks.bench_guard --run-root $(RUN_ROOT)

# QuantEvaluator / QuantizeTrainer time and peak memory at 10k, 100k, 1M examples (~20 min; needs a
# finished Fashion-MNIST run: make bench's, else make run's).
bench-scale: venv
	$(PY) -m benchmarks.bench_scale --out runs/bench_scale $(BENCH_SCALE_ARGS)
	cp runs/bench_scale/scale.json benchmarks/results/bench_scale_results.json
	cp runs/bench_scale/scale.md benchmarks/results/bench_scale_results.md
	cp runs/bench_scale/scale.png benchmarks/results/bench_scale.png

# Re-render the README's results blocks from benchmarks/results/bench*_results.json (a test checks them).
readme: venv
	$(PY) -m benchmarks.readme

test-fast: venv
	$(PY) -m pytest -q -ra -m "not slow" $(PYTEST_ARGS) tests

# Airflow 2 pins conflict with TFX 1.16's (werkzeug, SQLAlchemy, OpenTelemetry...), so Airflow gets its
# own venv that sees .venv's packages through site.addsitedir and shadows only what differs.
AF_VENV := .venv-airflow
AF_STAMP := $(AF_VENV)/.installed
AF_HOME := $(CURDIR)/runs/airflow_home
airflow-venv: $(AF_STAMP)

$(AF_STAMP): $(STAMP) constraints-airflow.txt
	@set -e; \
	rm -rf $(AF_VENV); \
	base=$$($(PY) -c 'import sys; print(sys.base_prefix)'); \
	"$$base/bin/python3.10" -m venv $(AF_VENV); \
	echo "import site; site.addsitedir('$(CURDIR)/$(VENV)/lib/python3.10/site-packages')" \
	  > $(AF_VENV)/lib/python3.10/site-packages/zz_tfx_qat_base.pth; \
	echo ">> installing Airflow into $(AF_VENV) (layered over $(VENV))"; \
	$(PY) -m uv pip install --quiet --compile-bytecode --native-tls --python $(AF_VENV)/bin/python \
	  --no-deps -r constraints-airflow.txt; \
	touch $(AF_STAMP); echo ">> $(AF_VENV) ready"

# DagBag import check + `airflow dags test` of the DAG on digits, on a throw-away SQLite Airflow.
test-airflow: airflow-venv
	TFX_QAT_AIRFLOW_TESTS=1 AIRFLOW_HOME=$(AF_HOME) $(AF_VENV)/bin/python -m pytest -q -ra \
	  -p no:cacheprovider $(PYTEST_ARGS) tests/airflow_venv

clean:
	rm -rf runs .pytest_cache
