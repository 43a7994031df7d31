"""ember's benchmark suite: numpy, PyTorch eager, torch.compile and ember, timed in one process.

Run from the repository root:

    .venv/bin/python -m benchmarks.run [--only NAME ...] [--quick] [--repeat N] [--write]

`suite.py` holds the registry (one row per benchmark), `harness.py` the framework adaptors, the
timing function and the machine facts, `run.py` the command line, the table and RESULTS.md.
"""
