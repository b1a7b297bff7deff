"""Tessera: hardware generators, golden models, verification and synthesis for
compressed-DNN accelerators. This package holds the glue: the block registry, the
``tessera`` command line and the benchmarks."""
