"""SUSHI: serving a query stream from the SubNets of one weight-shared SuperNet, with a
SubGraph-stationary (SGS) weight buffer (arXiv 2306.17266).

One module per concern; importing the package (or any module of it) never imports
torch -- training and measuring a SuperNet import it inside the functions that do it, and
their results are cached -- so the schedulers and the bit-true cache model load fast
(the cocotb benches and the instruction-set simulator use them).

================================  =========================================================
:mod:`~golden.sushi.supernet`     a trained SuperNet as data: int8 matrices, SubNets, quality
:mod:`~golden.sushi.digits_cnn`   the elastic CNN on digits: spec, sandwich training (torch)
:mod:`~golden.sushi.elastic_minilm`  elastic all-MiniLM-L6-v2 (depth, FFN width, heads)
:mod:`~golden.sushi.space`        the SubNet space: weight blocks, cost model, Pareto front
:mod:`~golden.sushi.platform`     SGS buffer + off-chip bandwidth; the figures' core
:mod:`~golden.sushi.streams`      seeded query streams with latency SLOs and accuracy floors
:mod:`~golden.sushi.cache_model`  bit-true SGS buffer model (and LRU): no torch
:mod:`~golden.sushi.choice`       the SubNet choice rule
:mod:`~golden.sushi.results`      per-query records and summary figures
:mod:`~golden.sushi.sched`        SushiSched and its oracle twin
:mod:`~golden.sushi.baselines`    no cache, LRU, static
:mod:`~golden.sushi.serve`        one harness for every policy
:mod:`~golden.sushi.registry`     the named SuperNets and their platforms; serving a stream
================================  =========================================================
"""

from .baselines import STATIC_SLO_FRACTION, static_blocks, static_subnet
from .cache_model import Command, LRUCacheModel, SGSCacheModel
from .choice import choose_subnet
from .digits_cnn import ElasticCNNSpec
from .elastic_minilm import ElasticMiniLMSpec
from .platform import CORE, OFFCHIP_BYTES_PER_CYCLE, Platform
from .results import QueryRecord, ServeResult
from .sched import SushiSched
from .registry import SUPERNETS, serve_stream
from .serve import POLICIES, serve
from .space import SubNetInfo, SubNetSpace, tile_shape
from .streams import STREAMS, Query, make_stream
from .supernet import MatmulUse, SubNet, SuperNet

__all__ = ["STATIC_SLO_FRACTION", "static_blocks", "static_subnet", "Command", "LRUCacheModel",
           "SGSCacheModel", "choose_subnet", "ElasticCNNSpec", "ElasticMiniLMSpec", "CORE", "OFFCHIP_BYTES_PER_CYCLE", "Platform",
           "QueryRecord", "ServeResult", "SushiSched", "SUPERNETS", "serve_stream", "POLICIES", "serve", "SubNetInfo", "SubNetSpace",
           "tile_shape", "STREAMS", "Query", "make_stream", "MatmulUse", "SubNet", "SuperNet"]
