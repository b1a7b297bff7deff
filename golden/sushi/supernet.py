"""A trained SuperNet as the schedulers see it: int8 weight matrices, the SubNets with
the matrix products each runs, and each SubNet's measured quality. numpy only.

Every SuperNet of :mod:`golden.sushi` (the elastic digits CNN of
:mod:`golden.sushi.digits_cnn`, the elastic all-MiniLM-L6-v2 of
:mod:`golden.sushi.elastic_minilm`) is trained or derived once with PyTorch and stored as
a :class:`SuperNet` in the model cache (``golden.cache.cache_dir()``), so everything
downstream -- blocks, costs, query streams, schedules -- loads without torch.

Conventions
-----------
* ``matrices[i]`` is a stored weight matrix ``W[rows, K]`` of int8 values (an int8
  array), quantized symmetrically per row: ``q = clip(round(W / s_r), -127, 127)``,
  ``s_r = max_k |W[r, k]| / 127`` (``scales[i][r]``; a zero row gets ``s_r = 1``).
  Convolutions are stored in the tensor core's K order (``golden.lowering``: ``(kh, kw,
  C_in)``, input channels innermost).
* A SubNet runs a sequence of :class:`MatmulUse`: the rows and columns of one stored
  matrix it reads (half-open ranges) and the number of activation columns it multiplies
  them with per query (output pixels of a convolution, tokens of a transformer, 1 for a
  fully connected layer at batch 1). A product of two activations (attention scores)
  has ``matrix=None`` and reads no weights.
* ``quality[s]`` is SubNet ``s``'s measured figure in percent (top-1, or 100 x cosine to
  the full model); ``item_quality[s, i]`` the same for test item ``i`` alone (100 for a
  right digit and 0 for a wrong one; 100 x the sentence's cosine). ``resolution`` is
  one test item's worth of ``quality``: differences below it are not measurable.
"""

import fcntl
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spec.outputs import atomic_path

from .. import GoldenError
from ..cache import load_or_rebuild

__all__ = ["Ranges", "MatmulUse", "SubNet", "SuperNet", "quantize_rows", "cached"]

#: Half-open index ranges ``((start, stop), ...)``, ascending and disjoint.
Ranges = tuple[tuple[int, int], ...]


def _ranges(value, name: str) -> Ranges:
    out, last = [], -1
    for start, stop in value:
        start, stop = int(start), int(stop)
        if not last <= start < stop:
            raise GoldenError(f"{name} must be ascending, disjoint, non-empty [start, stop) ranges, "
                              f"not {value!r}")
        if start == last:                   # adjacent: one range
            out[-1] = (out[-1][0], stop)
        else:
            out.append((start, stop))
        last = stop
    if not out:
        raise GoldenError(f"{name} must name at least one index, not {value!r}")
    return tuple(out)


@dataclass(frozen=True)
class MatmulUse:
    """One matrix product of a SubNet: ``out x K`` weights of a stored matrix times ``K x
    columns`` activations.

    Members
    -------
    matrix : int or None
        Index of the stored matrix, or None for a product of two activations.
    rows, cols : Ranges
        The rows (outputs) and columns (reduction axis K) of the matrix it reads; for
        ``matrix=None``, ``((0, out),)`` and ``((0, K),)``.
    columns : int
        Activation columns per query (>= 1).
    """

    matrix: int | None
    rows: Ranges
    cols: Ranges
    columns: int

    def __post_init__(self):
        object.__setattr__(self, "rows", _ranges(self.rows, "rows"))
        object.__setattr__(self, "cols", _ranges(self.cols, "cols"))
        if self.columns < 1:
            raise GoldenError(f"a product needs >= 1 activation column, not columns={self.columns!r}")

    @property
    def out(self) -> int:
        return sum(b - a for a, b in self.rows)

    @property
    def k(self) -> int:
        return sum(b - a for a, b in self.cols)

    def to_json(self) -> list:
        return [self.matrix, [list(r) for r in self.rows], [list(c) for c in self.cols], self.columns]

    @classmethod
    def from_json(cls, value) -> "MatmulUse":
        matrix, rows, cols, columns = value
        return cls(matrix, tuple(map(tuple, rows)), tuple(map(tuple, cols)), int(columns))


@dataclass(frozen=True)
class SubNet:
    """A SubNet: its name, its choice of each elastic dimension, and its products in the
    order it runs them."""

    name: str
    choice: dict[str, int] = field(hash=False)
    uses: tuple[MatmulUse, ...] = field(repr=False)


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8 quantization (module docstring): ``(q as int8, scales)``."""
    w = np.asarray(w, dtype=np.float64)
    scales = np.abs(w).max(axis=1) / 127
    scales[scales == 0] = 1.0
    q = np.clip(np.round(w / scales[:, None]), -127, 127).astype(np.int8)
    return q, scales


@dataclass(frozen=True)
class SuperNet:
    """A weight-shared SuperNet, trained and measured (module docstring).

    Members
    -------
    name : str
        ``"digits-cnn"``, ``"minilm"``, ...
    metric : str
        What ``quality`` measures (``"top-1 (%)"``, ...).
    matrices, scales, biases : tuple of arrays
        int8 ``W[rows, K]``, its per-row scales and the layer's float biases (which live
        beside the core, not in the weight buffer).
    subnets : tuple of SubNet
    quality : array [subnets]
    item_quality : array [subnets, test items]
    resolution : float
        One test item's worth of quality, in points.
    info : dict
        Provenance: spec, recipe, seed, test items, training time.
    """

    name: str
    metric: str
    matrices: tuple[np.ndarray, ...] = field(repr=False)
    scales: tuple[np.ndarray, ...] = field(repr=False)
    biases: tuple[np.ndarray, ...] = field(repr=False)
    subnets: tuple[SubNet, ...] = field(repr=False)
    quality: np.ndarray = field(repr=False)
    item_quality: np.ndarray = field(repr=False)
    resolution: float
    info: dict[str, Any] = field(default_factory=dict, repr=False, hash=False)

    def __post_init__(self):
        if len(self.quality) != len(self.subnets) or self.item_quality.shape[0] != len(self.subnets):
            raise GoldenError(f"{len(self.subnets)} SubNets but {len(self.quality)} quality figures and "
                              f"{self.item_quality.shape[0]} rows of per-item quality")
        for s in self.subnets:
            for use in s.uses:
                if use.matrix is None:
                    continue
                if not 0 <= use.matrix < len(self.matrices):
                    raise GoldenError(f"SubNet {s.name} uses matrix {use.matrix}; there are {len(self.matrices)}")
                rows, k = self.matrices[use.matrix].shape
                if use.rows[-1][1] > rows or use.cols[-1][1] > k:
                    raise GoldenError(f"SubNet {s.name} reads rows {use.rows} / cols {use.cols} of matrix "
                                      f"{use.matrix}, which is {rows} x {k}")

    @property
    def items(self) -> int:
        """Test items (images, sentences) a query can name."""
        return self.item_quality.shape[1]

    def save(self, path: Path) -> None:
        """Write to ``path`` (.npz) whole: a reader never sees half (:func:`spec.outputs.atomic_path`)."""
        with atomic_path(path) as tmp:
            self._write(tmp)

    def _write(self, file: Path) -> None:
        meta = {"name": self.name, "metric": self.metric, "resolution": self.resolution, "info": self.info,
                "subnets": [[s.name, s.choice, [u.to_json() for u in s.uses]] for s in self.subnets]}
        arrays = {f"m{i}": m for i, m in enumerate(self.matrices)}
        arrays |= {f"s{i}": s for i, s in enumerate(self.scales)}
        arrays |= {f"b{i}": b for i, b in enumerate(self.biases)}
        np.savez(file, meta=np.array(json.dumps(meta)), quality=self.quality, item_quality=self.item_quality,
                 **arrays)

    @classmethod
    def load(cls, path: Path) -> "SuperNet":
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                count = sum(1 for k in data.files if k.startswith("m") and k[1:].isdigit())
                matrices = tuple(data[f"m{i}"] for i in range(count))
                scales = tuple(data[f"s{i}"] for i in range(count))
                biases = tuple(data[f"b{i}"] for i in range(count))
                quality, item_quality = data["quality"], data["item_quality"]
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise GoldenError(f"the cached SuperNet {path} is unreadable ({exc}); delete it to rebuild") from None
        subnets = tuple(SubNet(name, choice, tuple(MatmulUse.from_json(u) for u in uses))
                        for name, choice, uses in meta["subnets"])
        return cls(meta["name"], meta["metric"], matrices, scales, biases, subnets, quality, item_quality,
                   float(meta["resolution"]), meta["info"])


def cached(path: Path, build: Callable[[], SuperNet]) -> SuperNet:
    """The SuperNet stored at ``path``, built with ``build()`` and stored first if it is not
    there (:func:`golden.cache.load_or_rebuild`). Concurrent callers (pytest-xdist workers,
    two benchmarks) wait on a lock file, so only one of them builds. An unreadable file (a
    truncated write from another tool) is named in a warning, removed and rebuilt."""
    built = []

    def write(tmp: Path) -> None:
        built.append(build())
        built[0]._write(tmp)

    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        net = load_or_rebuild(path, SuperNet.load, write, "SUSHI SuperNet")
    return built[0] if built else net
