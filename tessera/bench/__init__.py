"""The benchmarks: ``tessera bench NAME`` runs ``tessera.bench.<NAME>.run_bench(out, jobs)``
(``NAME`` with ``-`` as ``_``). Each prints its figures and writes JSON and Markdown into
``out``. Speed and size are measured here, never asserted in timed tests."""
