# One command to set up and run the main job, one to set up and run the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE ?= demos/samples/astronaut.png
TEXT ?= an astronaut in a white spacesuit holding a helmet, with an American flag behind her
OUT ?= protected

.PHONY: run test setup data browser lint bench report verify default-model robust-model robust-strong-model robust-augment-model robust-ueraser-model robust-shuffle-model robust-depth-model robust-luma-model surrogate ueraser-surrogate robust-ueraser-surrogate-model clean

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
	$(BIN)/ruff check t2ue surrogates eval tests demos
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python eval/bench_speed.py
	$(BIN)/python eval/bench_demo.py

# The evaluator's committed results (eval/REPORT.md): every plan under eval/configs, then the tables.
# Runs already in eval/results/runs are kept, so an interrupted reproduction resumes.
PLANS ?= openclipart openclipart-fraction openclipart-epsilon fashion-mnist label-agnostic-fashion label-agnostic-openclipart \
  label-agnostic-fashion-followups label-agnostic-fashion-oracle label-agnostic-fashion-oracle-seeds label-agnostic-fashion-hierarchy label-agnostic-fashion-hierarchy-seeds label-agnostic-fashion-separate label-agnostic-fashion-separate-views label-agnostic-fashion-separate-seeds label-agnostic-fashion-clip label-agnostic-fashion-clip-seeds label-agnostic-fashion-clip-coarse label-agnostic-fashion-clip-coarse-followups label-agnostic-fashion-clip-coarse-seeds label-agnostic-fashion-granularity label-agnostic-fashion-granularity-control label-agnostic-fashion-granularity-seeds defenses-openclipart defenses-fashion-mnist defenses-fashion-mnist-64 \
  defenses-fashion-mnist-64-seed1 defenses-fashion-mnist-clip defenses-fashion-mnist-clip-seeds defenses-fashion-mnist-clip-epsilon defenses-fashion-mnist-clip-epsilon-seeds \
  openclipart-text-code openclipart-converged openclipart-converged-epsilon fashion-mnist-clip-converged openclipart-converged-main \
  openclipart-finetune openclipart-finetune-seeds openclipart-finetune-transfer openclipart-finetune-default-recipe
report: setup data
	for plan in $(PLANS); do $(BIN)/t2ue evaluate --config eval/configs/$$plan.json -o eval/results/runs || exit 1; done
	$(BIN)/t2ue report eval/results/runs -o eval/results/report

verify: setup data
	$(BIN)/t2ue verify default --data openclipart --json eval/results/verify-default-openclipart.json

surrogate: setup data
	$(BIN)/python surrogates/train_surrogate.py --out t2ue/assets/default/surrogate

# Recipes of the bundled noise models (provider parts of both offline sets, balanced); the robust one
# adds expectation over JPEG / thumbnailing / blur (t2ue train --robust).
default-model: setup data
	$(BIN)/t2ue train --data openclipart+fashion-mnist --limit-per-set 4000 --surrogate default \
	  --steps 400 --batch-size 64 --lr 2e-3 --seed 0 -o runs/default
	cp -r runs/default/model/generator runs/default/model/noise_model.json t2ue/assets/default/

# $(call bundle,NAME): copy runs/NAME's trained generator into t2ue/assets/NAME, pointing at the bundled text encoder.
define bundle
	mkdir -p t2ue/assets/$(1) && cp -r runs/$(1)/model/generator t2ue/assets/$(1)/
	$(BIN)/python -c "import json; c=json.load(open('runs/$(1)/model/noise_model.json')); \
	  c['text_encoder']='default'; json.dump(c, open('t2ue/assets/$(1)/noise_model.json', 'w'), indent=2)"
endef

robust-model: setup data
	$(BIN)/t2ue train --data openclipart+fashion-mnist --limit-per-set 4000 --surrogate default \
	  --steps 400 --batch-size 64 --lr 2e-3 --seed 0 --robust -o runs/robust
	$(call bundle,robust)

# The robust recipe with the strong expectation (adds grayscale, JPEG down to quality 10, quarter thumbnails).
robust-strong-model: setup data
	$(BIN)/t2ue train --data openclipart+fashion-mnist --limit-per-set 4000 --surrogate default \
	  --steps 400 --batch-size 64 --lr 2e-3 --seed 0 --robust --eot strong -o runs/robust-strong
	$(call bundle,robust-strong)

# The robust recipe with UEraser's augmentations in the expectation (crop, plasma, colour jitter, channel shuffle).
robust-augment-model: setup data
	$(BIN)/t2ue train --data openclipart+fashion-mnist --limit-per-set 4000 --surrogate default \
	  --steps 400 --batch-size 64 --lr 2e-3 --seed 0 --robust --eot augment -o runs/robust-augment
	$(call bundle,robust-augment)

# Min-max against UEraser: its composed augmentation at every step, the worst of two copies per pair.
robust-ueraser-model: setup data
	$(BIN)/t2ue train --data openclipart+fashion-mnist --limit-per-set 4000 --surrogate default \
	  --steps 400 --batch-size 64 --lr 2e-3 --seed 0 --robust --eot ueraser -o runs/robust-ueraser
	$(call bundle,robust-ueraser)

# Min-max against channel shuffle alone, the part of UEraser without which it no longer breaks the default model.
robust-shuffle-model: setup data
	$(BIN)/t2ue train --data openclipart+fashion-mnist --limit-per-set 4000 --surrogate default \
	  --steps 400 --batch-size 64 --lr 2e-3 --seed 0 --robust --eot shuffle -o runs/robust-shuffle
	$(call bundle,robust-shuffle)

# The robust recipe plus colour depth reduced to 3-5 bits (straight-through): the purification that lifts the
# default model above half of clean on one seed of the Fashion-MNIST CLIP.
robust-depth-model: setup data
	$(BIN)/t2ue train --data openclipart+fashion-mnist --limit-per-set 4000 --surrogate default \
	  --steps 400 --batch-size 64 --lr 2e-3 --seed 0 --robust --eot depth -o runs/robust-depth
	$(call bundle,robust-depth)

# Min-max against UEraser, as robust-ueraser, but against a surrogate itself trained under UEraser's
# augmentation (runs/ueraser-surrogate), so the noise has to move features that survive it; the surrogate
# travels with the model.
ueraser-surrogate: setup data
	$(BIN)/python surrogates/train_surrogate.py --augment ueraser --out runs/ueraser-surrogate

robust-ueraser-surrogate-model: ueraser-surrogate
	$(BIN)/t2ue train --data openclipart+fashion-mnist --limit-per-set 4000 --surrogate runs/ueraser-surrogate \
	  --steps 400 --batch-size 64 --lr 2e-3 --seed 0 --robust --eot ueraser -o runs/robust-ueraser-surrogate
	rm -rf t2ue/assets/robust-ueraser-surrogate
	cp -r runs/robust-ueraser-surrogate/model t2ue/assets/robust-ueraser-surrogate

# The robust recipe with one noise plane for R, G and B (t2ue train --luma): survives grayscale exactly.
robust-luma-model: setup data
	$(BIN)/t2ue train --data openclipart+fashion-mnist --limit-per-set 4000 --surrogate default \
	  --steps 400 --batch-size 64 --lr 2e-3 --seed 0 --robust --luma -o runs/robust-luma
	$(call bundle,robust-luma)
