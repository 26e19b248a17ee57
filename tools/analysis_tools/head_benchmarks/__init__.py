"""Per-family benchmark modules of benchmark_heads.py; each defines run(args) -> list of records."""
