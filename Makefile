# One entry point for installing and checking rtrec. `make check` is what CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install check lint test rust-test demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# Editable install: maturin builds the Rust extension (abi3, release) into the venv.
install: $(BIN)/python
	$(BIN)/pip install -e '.[dev]'

lint:
	cargo fmt --check
	cargo clippy --all-targets --all-features -- -D warnings
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench
	$(BIN)/mypy python/rtrec
	$(BIN)/python -m mypy.stubtest rtrec._native  # the stub must match the compiled module

rust-test:
	cargo test

test:
	$(BIN)/python -m pytest -q

check: install lint rust-test test

demo: install
	$(BIN)/rtrec serve --demo

bench: install
	$(BIN)/pip install -e '.[dev,bench]'
	$(BIN)/python bench/hashing.py
	$(BIN)/python bench/ring.py
	$(BIN)/python bench/ingest.py

clean:
	rm -rf target $(VENV) .pytest_cache .ruff_cache
