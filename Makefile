# Two commands do everything: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export IMGCLF_CACHE_DIR ?= $(CURDIR)/.cache/imgclf

.PHONY: install demo test test-browser bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
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

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

test-browser: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m browser

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/accuracy.py ../shared/datasets/flowers-bench --compare
	$(BIN)/python benchmarks/ood.py ../shared/datasets/flowers-bench

clean:
	rm -rf models .cache .pytest_cache
