# Two commands do all the set-up on a fresh machine with only Python 3.11+:
#   make demo   - build the venv, then run the end-to-end demo on built-in synthetic data
#   make test   - build the venv, then run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
DEMO_OUT ?= demo_out

.PHONY: venv test demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch pinned exactly: an unpinned torch pulls several GB of CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,train]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	@# the cohort explorer's browser tests need chromium (they skip, naming what is missing, without it)
	@if [ "$$(id -u)" = 0 ]; then { command -v chromium && command -v chromedriver; } >/dev/null || (timeout 300 apt-get install -y chromium chromium-driver >/dev/null 2>&1 && echo "installed chromium") || echo "chromium not installable here: browser tests will be skipped"; else { command -v chromium && command -v chromedriver; } >/dev/null || echo "chromium or chromedriver not installed (not root): browser tests will be skipped"; fi
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

demo: $(STAMP)
	$(BIN)/clef demo --out $(DEMO_OUT)

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache build *.egg-info
