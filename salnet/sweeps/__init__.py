"""Sweeps: a sweep file's schema, checks and loading (``sweeps/*.yaml``), a sweep's folder, and its final
evaluation: the summary's tables, TensorBoard board, pictures and the statistics behind the comparisons."""
