# Two commands do everything:  `make run` (embedded default end to end)  and  `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all

.PHONY: install run test lint format clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is required, found {sys.version.split()[0]}; set PYTHON=/path/to/python3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# The embedded default: digits MiniResNet, offline on CPU, outputs under results/mini/.
run: install
	$(BIN)/snakemake --configfile config/mini.yaml --cores $(CORES)

test: install
	$(BIN)/pytest -ra --durations=25

lint: install
	$(BIN)/ruff check src workflow tests bench
	$(BIN)/ruff format --check src workflow/scripts tests bench
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/snakemake --lint --configfile config/mini.yaml

format: install
	$(BIN)/ruff check --fix src workflow tests bench
	$(BIN)/ruff format src workflow/scripts tests bench
	$(BIN)/snakefmt Snakefile workflow

clean:
	rm -rf results .snakemake
