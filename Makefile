# Two commands do everything: `make demo` and `make test`.
# Any Python 3.11 or newer on PATH will do (the newest found first); `make PYTHON=/path/to/python demo` picks one.
PYTHON ?= $(shell for p in python3.14 python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-browser bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: imgclf needs Python 3.11 or newer; none was found on PATH (make PYTHON=/path/to/python3.11 demo)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e .
	touch $(STAMP)

# The tests also need the dev tools and the torch extra (fine-tuning, backbone exports, other backbones),
# the face extra and the tflite extra (imgclf export).
TEST_STAMP := $(VENV)/.installed-test
$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --disable-pip-version-check -q -e ".[dev,face,torch,tflite]"
	touch $(TEST_STAMP)

demo: install
	$(BIN)/imgclf train examples/flowers/photos -o models/flowers
	$(BIN)/imgclf predict models/flowers examples/flowers/unseen
	$(BIN)/imgclf evaluate models/flowers examples/flowers/unseen
	@echo
	@echo "imgclf is installed in $(VENV). To type the README's commands as they are, first run:"
	@echo "    . $(VENV)/bin/activate"
	@echo "(or call $(BIN)/imgclf). The embeddings computed here are cached for those commands too."

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

test-browser: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m browser

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/accuracy.py ../shared/datasets/flowers-bench --compare
	$(BIN)/python benchmarks/ood.py ../shared/datasets/flowers-bench

clean:
	rm -rf models .cache .pytest_cache
