# dlcamp: two commands do all set-up.  `make demo` trains the default model; `make test` tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dlcamp-installed
EXTRAS ?= data,lessons,lab,serve,camp,test
DEMO_ARGS ?=

.PHONY: setup data browser demo test lint bench lab serve clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "dlcamp needs Python >= 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	@touch $@

data:
	@bash scripts/install-data.sh

browser:
	@bash scripts/install-browser.sh

demo: setup
	$(BIN)/dlcamp train --model cnn --dataset fashion-mnist --out runs/demo --force $(DEMO_ARGS)
	$(BIN)/dlcamp evaluate runs/demo

test: setup browser
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench lessons

lab: setup
	$(BIN)/python -m pip install -q -e '.[lab]'
	$(BIN)/dlcamp lessons export --out notebooks
	$(BIN)/jupyter lab --ip 127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root) notebooks

serve: setup
	test -f runs/demo/checkpoint.pt || $(MAKE) demo
	$(BIN)/dlcamp serve runs/demo

bench: setup
	$(BIN)/python bench/run_all.py
	$(BIN)/python bench/lessons.py

clean:
	rm -rf $(VENV) runs .pytest_cache
