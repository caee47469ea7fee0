# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: install
	$(BIN)/jellybean validate configs/aicity/workflow.yaml configs/aicity/zoo.yaml configs/aicity/infrastructure.yaml
	$(BIN)/jellybean plan -w configs/aicity/workflow.yaml -z configs/aicity/zoo.yaml \
		-i configs/aicity/infrastructure.yaml -o out/aicity-plan.yaml --time-limit 60
	$(BIN)/jellybean explain out/aicity-plan.yaml
	$(BIN)/jellybean plan --jellybean-inputs examples/vqa/prototype_inputs

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/planner_scale.py

clean:
	rm -rf $(VENV) out .pytest_cache
