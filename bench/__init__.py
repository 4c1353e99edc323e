"""Benchmarks of istio-upgrade against the sandbox, a real Temporal dev server and Prometheus.

Each module runs as ``python -m bench.<name> --json OUT``: it prints a table and writes the
figures as JSON. They are measurements, not tests: nothing here runs in the test suite (the
pure helpers of :mod:`bench._harness` have fast unit tests in ``tests/unit/test_bench_*.py``).

- :mod:`bench.overhead` — one upgrade: wall time against the sandbox's physical lower bound,
  Kubernetes requests, PromQL queries, history size, worker memory and CPU.
- :mod:`bench.scale` — the same at several sizes up to 2,000 namespaces, with the exponent of
  a log-log fit of each figure.
- :mod:`bench.baseline` — ours against the scripted canary procedure of Istio's docs and a
  bare ``kubectl`` loop running our plan, each on a fresh sandbox of the same scenario.
- :mod:`bench.detection` — the gate's verdicts on good and bad revisions.
- :mod:`bench.payloads` — every payload that grows with the mesh, without a server.
- :mod:`bench.history_size` — history growth per batch and evaluation from recorded histories.
- :mod:`bench.sandbox_large` — how fast the sandbox itself serves the ``large`` scenario.
"""
