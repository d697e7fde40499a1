# Two commands for a fresh machine: `make demo` and `make test`.
# Both install the exact, hashed versions of requirements/lock-py311.txt (so CI, which runs
# `make test`, installs what a user's `make demo` installs), then dlpipe itself without
# dependencies. `make lock` regenerates the lock from pyproject.toml's bounds.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements/lock-py311.txt
# `make lock`'s resolver: uv, pinned, in a throwaway venv (never in $(VENV)); the index it
# reads (PyPI: its simple index gives every file's sha256 without downloading it).
UV ?= uv==0.13.9
LOCK_INDEX ?= https://pypi.org/simple

.PHONY: demo demo-text demo-images demo-tabular test test-fast bench install lock clean

# Re-made when the lock or pyproject.toml changes. `--require-hashes` refuses any file
# whose sha256 is not in the lock; setuptools is in the lock, so the editable build
# uses it (`--no-build-isolation`) instead of fetching an unpinned one.
$(BIN)/.installed: $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e '.[test,demo]'
	$(BIN)/python -m pip check
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/dlpipe demo

demo-text: $(BIN)/.installed
	$(BIN)/dlpipe demo text

demo-images: $(BIN)/.installed
	$(BIN)/dlpipe demo images

demo-tabular: $(BIN)/.installed
	$(BIN)/dlpipe demo tabular

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

# The unit tests without Ray, training or the slower subprocess checks: under 2 minutes.
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m "not slow and not ray and not train"

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_windows.py

# Newest versions within pyproject.toml's bounds for CPython 3.11 on x86_64 Linux
# (this machine and CI), with the `test` and `demo` extras, and the sha256 of every file
# of each pinned version (all platforms' wheels and the sdist), so pip may pick any of
# them, from PyPI or from a mirror holding the same files. Then `make test`, and commit
# the lock if it passes (README, "Upgrading dependencies").
lock:
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/python" -m pip install -q "$(UV)" && \
	mkdir -p $(dir $(LOCK)) && \
	"$$tmp/venv/bin/uv" pip compile pyproject.toml --extra test --extra demo \
	    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	    --generate-hashes --index-url $(LOCK_INDEX) --no-emit-index-url \
	    --custom-compile-command "make lock" --quiet --output-file $(LOCK)

clean:
	rm -rf $(VENV) runs
