"""Speed benchmarks and the GPU check, run from the repository root as modules: ``python -m benchmarks.train_bench``
(docs/benchmarks.md). A package so that they import each other by name (``from benchmarks.model_bench import ...``)."""
