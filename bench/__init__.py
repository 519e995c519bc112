"""Benchmarks: each module is a command, run from the repository's root as a module so that `bench` and the test
bed (`tests.support`) import without any path set-up, e.g.

    .venv/bin/python -m bench.bench_planner --images 2000
    sudo .venv/bin/python -m bench.bench_remediation

Figures and the commands that made them: bench/RESULTS.md. tests/bench/ tests their pure parts."""
