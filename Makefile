# Developer shortcuts; docs/developing.md explains each. Run from the repository root after ./setup.sh.
PY := .venv/bin/python

.PHONY: setup lint typecheck check test test-fast mutants bench gpu-check-dry demo

setup:  # .venv with salnet and the dev extra (idempotent)
	./setup.sh

lint:
	.venv/bin/ruff check .

typecheck:  # mypy on salnet/ (pyproject.toml [tool.mypy])
	.venv/bin/mypy

check: lint typecheck

test:  # what CI runs: lint, type check, a local Slurm where this machine allows it, the whole suite
	tests/run.sh

test-fast:  # the suite without the Slurm cluster and the slow tests
	SALNET_NO_SLURM=1 $(PY) -m pytest -q -m "not slurm and not slow"

mutants:  # the planted-bug check: each bug of tests/mutants/run.py caught by the tests that guard its code
	$(PY) tests/mutants/run.py

bench:  # the CPU benchmarks with the arguments of docs/benchmarks.md (several minutes)
	$(PY) -m benchmarks.loader_bench
	$(PY) -m benchmarks.metrics_bench --n 1000 --ref-n 200
	$(PY) -m benchmarks.train_bench --device cpu --batch 4 --steps 1 --warmup 1
	$(PY) -m benchmarks.model_bench --device cpu --batch 32 --steps 1 --warmup 0
	$(PY) -m benchmarks.ddp_scaling

gpu-check-dry:  # every step of the GPU check at tiny sizes, on any CPU (about a minute)
	benchmarks/gpu_check.sh --dry

demo:  # the README's main command
	$(PY) jobs/demo.py
