# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install system-deps demo test bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# Mosquitto: the broker tests run against (and `jellybean up` prefers; it falls back to an embedded
# broker without it). Installed with apt-get when missing and we are root (CI); otherwise we say how.
system-deps:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing mosquitto with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	  else echo "mosquitto is missing: run 'sudo apt-get install mosquitto'" >&2; exit 1; fi; }

demo: install
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || $(MAKE) --no-print-directory system-deps || true
	$(BIN)/jellybean validate configs/aicity/workflow.yaml configs/aicity/zoo.yaml configs/aicity/infrastructure.yaml
	$(BIN)/jellybean plan -w configs/aicity/workflow.yaml -z configs/aicity/zoo.yaml \
		-i configs/aicity/infrastructure.yaml -o out/aicity-plan.yaml --time-limit 60
	$(BIN)/jellybean explain out/aicity-plan.yaml
	$(BIN)/jellybean plan --jellybean-inputs examples/vqa/prototype_inputs
	$(BIN)/jellybean scene out/aicity-scene --cameras 4 --seconds 10 --seed 7 --overwrite --quiet
	$(BIN)/jellybean up examples/aicity --workdir out/up --replay out/aicity-scene --report out/report \
		--submission out/aicity-submission.txt

# Two pytest-xdist workers, a test module at a time each; modules that time the machine run alone
# (tests/conftest.py, EXCLUSIVE_MODULES).
test: install system-deps
	$(BIN)/python -m pytest -n 2 --dist loadfile

bench: install
	$(BIN)/python benchmarks/planner_scale.py

clean:
	rm -rf $(VENV) out .pytest_cache
