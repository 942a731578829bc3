# One command to set up and run the main job, one to set up and run the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE ?= demos/samples/astronaut.png
TEXT ?= an astronaut in a white spacesuit holding a helmet, with an American flag behind her
OUT ?= protected

.PHONY: run test test-product test-eval setup data browser bench report verify model surrogate

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# Debian packages that hold the built-in offline data sets and the test browser (root, or sudo).
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] || [ ! -d /usr/share/openclipart/svg ]; then \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q && \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q dataset-fashion-mnist openclipart-png openclipart-svg; fi

browser:
	@command -v chromium >/dev/null || ( $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q && \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q chromium ) || echo "chromium could not be installed: browser tests will skip"

run: setup
	$(BIN)/t2ue protect $(SAMPLE) --text "$(TEXT)" -o $(OUT)

test: setup data browser
	$(BIN)/ruff check t2ue t2ue_eval surrogates eval tests demos
	$(BIN)/python -m pytest -q

# one side only, when a change touches only it
test-product: setup data browser
	$(BIN)/python -m pytest -q tests/product

test-eval: setup data
	$(BIN)/python -m pytest -q tests/eval

bench: setup
	$(BIN)/python eval/bench_cold_start.py
	$(BIN)/python eval/bench_speed.py
	$(BIN)/python eval/bench_demo.py

# The evaluator's committed results (eval/REPORT.md): every plan under eval/configs, then the tables.
# Runs already in eval/results/runs are kept, so an interrupted reproduction resumes.
PLANS ?= openclipart openclipart-fraction openclipart-epsilon fashion-mnist label-agnostic-fashion label-agnostic-openclipart \
  label-agnostic-fashion-followups label-agnostic-fashion-oracle label-agnostic-fashion-oracle-seeds label-agnostic-fashion-hierarchy label-agnostic-fashion-hierarchy-seeds label-agnostic-fashion-separate label-agnostic-fashion-separate-views label-agnostic-fashion-separate-seeds label-agnostic-fashion-clip label-agnostic-fashion-clip-seeds label-agnostic-fashion-clip-coarse label-agnostic-fashion-clip-coarse-followups label-agnostic-fashion-clip-coarse-seeds label-agnostic-fashion-granularity label-agnostic-fashion-granularity-control label-agnostic-fashion-granularity-seeds defenses-openclipart defenses-fashion-mnist defenses-fashion-mnist-64 \
  defenses-fashion-mnist-64-seed1 defenses-fashion-mnist-clip defenses-fashion-mnist-clip-seeds defenses-fashion-mnist-clip-epsilon defenses-fashion-mnist-clip-epsilon-seeds \
  openclipart-text-code openclipart-converged openclipart-converged-epsilon fashion-mnist-clip-converged openclipart-converged-main \
  openclipart-finetune openclipart-finetune-seeds openclipart-finetune-transfer openclipart-finetune-default-recipe \
  openclipart-ceiling openclipart-ceiling-defended
report: setup data
	for plan in $(PLANS); do $(BIN)/t2ue evaluate --config eval/configs/$$plan.json -o eval/results/runs || exit 1; done
	$(BIN)/t2ue report eval/results/runs -o eval/results/report

verify: setup data
	$(BIN)/t2ue verify default --data openclipart --json eval/results/verify-default-openclipart.json

surrogate: setup data
	$(BIN)/python surrogates/train_surrogate.py --out t2ue/assets/default/surrogate

# Every noise model of the repository from its recipe (eval/model_recipes.json): the zoo's default and
# robust into t2ue/assets, the research variants into eval/models (`make model NAME=robust-strong`)
model: setup data
	@test -n "$(NAME)" || (echo "make model NAME=... (a name in eval/model_recipes.json)" && exit 2)
	$(BIN)/python eval/make_model.py $(NAME)
