# The two commands of the README: `make demo` (the main job on built-in defaults) and
# `make test` (the test suite). Both run the idempotent set-up first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done

.PHONY: setup demo test bench clean-venv

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh demo_out

# pytest's exit 5 means no test ran: that is a failure, not a pass.
test: $(STAMP)
	$(PY) -m pytest tests --durations=15; rc=$$?; if [ $$rc -eq 5 ]; then echo "error: no tests ran" >&2; exit 1; fi; exit $$rc

bench: $(STAMP)
	$(PY) -m cli bench kernels --quick

clean-venv:
	rm -rf $(VENV)
