"""TACOS as a golden model: topology-aware collective synthesis (arXiv 2304.05301).

- :mod:`.topology`: the network (YAML file format and generators) and the link model
  (a chunk of ``B`` bytes takes ``latency + B / bandwidth`` on a link, one at a time);
- :mod:`.synth`: the synthesiser (greedy link-chunk matching on the time-expanded
  network) for All-Gather, Reduce-Scatter and All-Reduce;
- :mod:`.baselines`: ring, direct and recursive halving/doubling, timed by the same
  link model;
- :mod:`.check`: the validity checker every schedule passes, and the lower bound;
- :mod:`.schedule`: the schedule (transfers, ``schedule.json``).
"""

from .baselines import BASELINES, baseline
from .check import CheckReport, check, lower_bound_ps
from .schedule import COLLECTIVES, Schedule, Transfer
from .synth import synthesize
from .topology import Link, Topology, generate, load_topology, parse_topology

__all__ = ["BASELINES", "COLLECTIVES", "CheckReport", "Link", "Schedule", "Topology", "Transfer",
           "baseline", "check", "generate", "load_topology", "lower_bound_ps", "parse_topology",
           "synthesize"]
