# ChestAid: the quick start's two commands are `make run` and `make test`.
# Each sets up what it needs (a virtual environment in .venv; as root, the Debian
# packages the tests use) and then does its job.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEBIAN_TEST_PACKAGES := dcmtk dicom3tools orthanc orthanc-dicomweb systemd chromium openssl postgresql
STAMP := $(VENV)/.installed
# PyTorch is pinned to the builds this project is developed and tested with; installed
# first, so that the project's own looser lower bounds never pull another build.
TORCH_PACKAGES ?= torch==2.14.1 torchvision==0.29.1

.PHONY: run predict-sample test setup system-deps lint typecheck pytest bench default-model findings-model clean

setup: $(STAMP)

# --system-site-packages lets a machine that already has PyTorch reuse it instead of
# installing several gigabytes again.
$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "ChestAid needs Python 3.11 or newer"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PACKAGES)
	$(BIN)/python -m pip install --quiet -e '.[test,openvino,onnxruntime]'
	touch $(STAMP)

# Installs the real peers the integration tests talk to; skipped (with a note) when
# not root, in which case those tests skip naming the missing package (fail under CI=true).
system-deps:
	@missing=""; for p in $(DEBIAN_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: not root, cannot install:$$missing (their tests will skip)"; fi; \
	fi

# The main job: the DICOM node on its embedded default (AE CHESTAID on 127.0.0.1:11112,
# SQLite under ./var/, the bundled model). Stop it with Ctrl-C (SIGINT) or SIGTERM.
run: setup
	$(BIN)/chestaid-daemon db upgrade
	$(BIN)/chestaid-daemon serve

# Scores a generated DX with the bundled model from the command line (no daemon).
predict-sample: setup
	$(BIN)/chestaid sample var/sample/sample-dx.dcm
	$(BIN)/chestaid predict var/sample/sample-dx.dcm --cam var/sample/cams

lint: setup
	$(BIN)/python -m ruff check chestaid daemon migrations tests benchmarks
	$(BIN)/python -m ruff format --check chestaid daemon migrations tests benchmarks

typecheck: setup
	$(BIN)/python -m mypy

# Tests run in one process per core (pytest-xdist), a file's tests in one process so its
# module fixtures are built once. pytest exits 5 when it collected no test: that is a
# failure here, never a pass.
pytest: setup
	$(BIN)/python -m pytest -q -n auto --dist loadfile; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

test: system-deps lint typecheck pytest

# The recipe of the bundled default model, 2.0 (see its model card), from the shared
# pneumonia data in one command: about 25 minutes of training and 15 of calibration,
# checks and reports on 2 cores; interrupted, the same command resumes training from its
# last epoch. It writes $(MODEL_RUN)/ and its reports; publishing it is copying
# weights.safetensors, assessment.safetensors, manifest.json and splits.json to
# chestaid/default_model/.
#   make default-model DATA=path/to/pneumonia-kermany/train [EXTERNAL=folder of other radiographs]
MODEL_RUN ?= runs/default-model
MODEL_VERSION ?= densenet121-kermany-2.0
EXTERNAL ?=
default-model: setup
	@test -n "$(DATA)" || { echo "usage: make default-model DATA=path/to/pneumonia-kermany/train"; exit 2; }
	$(BIN)/chestaid --threads 2 train $(DATA) --out $(MODEL_RUN) --input-size 160 --epochs 8 \
	  --seed 0 --augment acquisition --weight-decay 5e-4 --label-smoothing 0.1 --ema 0.998 \
	  --orientation-head 0.25 --select last --model-version $(MODEL_VERSION) --no-progress
	$(BIN)/chestaid --threads 2 calibrate $(MODEL_RUN) $(DATA) --target-sensitivity 0.90 \
	  --out $(MODEL_RUN)-reports/calibration
	$(BIN)/chestaid --threads 2 assess $(MODEL_RUN) $(DATA) $(if $(EXTERNAL),--external $(EXTERNAL))
	$(BIN)/chestaid --threads 2 evaluate $(MODEL_RUN) $(DATA) --saliency \
	  --out $(MODEL_RUN)-reports/evaluation
	$(BIN)/chestaid --threads 2 evaluate $(MODEL_RUN) $(DATA) --robustness \
	  --out $(MODEL_RUN)-reports/robustness

# The bundled four-class model (COVID-19, viral and bacterial pneumonia, normal; see its
# model card) from the shared data in one command: the layout, training (about 25
# minutes on 2 cores, resumable), calibration, the not-assessable checks, evaluation
# and the shortcut audit. It
# writes $(FINDINGS_DATA)/, $(FINDINGS_RUN)/ and its reports; publishing it is copying
# weights.safetensors, assessment.safetensors, manifest.json and splits.json to
# chestaid/findings_model/.
#   make findings-model PEDIATRIC=path/to/pneumonia-kermany ADULT_COVID=path/to/covid19-hannover
FINDINGS_DATA ?= runs/findings-data
FINDINGS_RUN ?= runs/findings-model
FINDINGS_VERSION ?= densenet121-findings4-1.0
findings-model: setup
	@test -n "$(PEDIATRIC)" -a -n "$(ADULT_COVID)" || { echo "usage: make findings-model PEDIATRIC=path/to/pneumonia-kermany ADULT_COVID=path/to/covid19-hannover"; exit 2; }
	$(BIN)/chestaid dataset --pediatric $(PEDIATRIC) --adult-covid $(ADULT_COVID) --out $(FINDINGS_DATA)
	$(BIN)/chestaid --threads 2 train $(FINDINGS_DATA) --out $(FINDINGS_RUN) --input-size 160 \
	  --epochs 10 --seed 0 --augment acquisition --weight-decay 5e-4 --label-smoothing 0.1 \
	  --ema 0.998 --select last --model-version $(FINDINGS_VERSION) --no-progress
	$(BIN)/chestaid --threads 2 calibrate $(FINDINGS_RUN) $(FINDINGS_DATA) --target-sensitivity 0.90 \
	  --out $(FINDINGS_RUN)-reports/calibration
	$(BIN)/chestaid --threads 2 assess $(FINDINGS_RUN) $(FINDINGS_DATA)
	$(BIN)/chestaid --threads 2 evaluate $(FINDINGS_RUN) $(FINDINGS_DATA) \
	  --out $(FINDINGS_RUN)-reports/evaluation
	$(BIN)/chestaid --threads 2 audit --pediatric $(PEDIATRIC) --adult-covid $(ADULT_COVID) \
	  --bundle $(FINDINGS_RUN) --data $(FINDINGS_DATA) --out $(FINDINGS_RUN)-reports/audit

bench: setup
	$(BIN)/python benchmarks/bench_inference.py
	$(BIN)/python benchmarks/bench_e2e.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
