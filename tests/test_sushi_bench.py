"""``tessera bench sushi``'s figures reproduce: the reduced configuration (digits CNN, 100
queries per stream, every policy), rerun from scratch -- the SuperNet trained with its
seeds on one thread when the model cache is empty, as in CI -- gives exactly the headline
numbers stored next to the benchmark (tessera/bench/sushi_figures.json)."""

import json

from tessera.bench import sushi as bench


def test_reduced_configuration_reproduces_the_stored_figures():
    stored = json.loads(bench.FIGURES.read_text())
    assert {"full", "reduced"} <= set(stored) and stored["reduced"]
    got = json.loads(json.dumps(bench.reduced_headline()))
    assert got == stored["reduced"]
    # The figures are about something: per stream, SUSHI moves less off-chip data than no cache.
    for stream in got["digits-cnn"].values():
        assert stream["sushi"]["offchip_bytes_per_query"] < stream["no-cache"]["offchip_bytes_per_query"]
