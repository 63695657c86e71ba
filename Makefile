# Quick start: `make demo` (prepare, train, predict on embedded synthetic data) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DATA ?= data
DEMO_LOGS ?= logs

.PHONY: install demo test test-slow test-all lint

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python prepare.py source=synthetic paths.data_dir=$(DEMO_DATA) paths.log_dir=$(DEMO_LOGS)
	$(BIN)/python train.py experiment=demo paths.data_dir=$(DEMO_DATA) paths.log_dir=$(DEMO_LOGS)
	$(BIN)/python predict.py ckpt=best paths.data_dir=$(DEMO_DATA) paths.log_dir=$(DEMO_LOGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
