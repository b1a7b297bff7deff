"""N:M training recipes and their schedules: what each recipe does at time ``t``.

Plain Python (no torch): the recipe is a frozen, validated value that a training loop,
a report or a cost model can read without loading any training code.

Training time ``t`` runs over the *sparse phase* only, from 0 to 1; the phases are

1. dense warm-up (``warmup`` epochs): no mask;
2. sparse phase (``epochs - warmup - finetune`` epochs), by recipe:

   * ``srste``: forward ``W * mask``; backward passes the dense gradient plus
     ``lam * (1 - mask) * W`` (sparse-refined straight-through estimator);
   * ``mdgf-linear`` / ``mdgf-exp`` (mask decay): forward ``W * (mask + (1 - mask) * beta(t))``
     with ``beta = max(1 - decay * t, 0)`` or ``exp(-decay * t)``; gradients follow the
     forward, so pruned weights get ``beta``-scaled gradient early and none late;
   * ``sdgf`` (structure decay): SR-STE whose N follows ``schedule`` (e.g. 7:8 -> 4:8 ->
     2:8 -> 1:8), each stage an equal slice of the sparse phase;

3. fine-tune (``finetune`` epochs): forward ``W * mask`` with the mask frozen at the end of
   phase 2 and pruned weights held at zero (plain binary mask).

The mask (``golden.nm.mask`` of the weights as the core reads them) is recomputed from
the current weights at every step of phase 2 (:mod:`golden.sparse_train.estimators`).
"""

import dataclasses
import math
from dataclasses import dataclass

from .. import GoldenError

__all__ = ["Recipe", "RECIPES", "SPARSE_RECIPES", "default_schedule"]

RECIPES = ("dense", "srste", "mdgf-linear", "mdgf-exp", "sdgf")
#: The recipes that end N:M (all but ``dense``), in the order reports list them.
SPARSE_RECIPES = RECIPES[1:]


def default_schedule(n: int, m: int) -> tuple[int, ...]:
    """Structure-decay stages ending at n:m: m-1, then halving down to n (7, 4, 2, 1 for 1:8)."""
    stages = [m - 1] if m - 1 > n else []
    k = m // 2
    while k > n:
        stages.append(k)
        k //= 2
    return tuple(stages) + (n,)


@dataclass(frozen=True)
class Recipe:
    """A training recipe (validated on construction; raises GoldenError naming the value)."""

    kind: str = "srste"
    n: int = 2
    m: int = 4
    epochs: int = 30
    warmup: int = 5
    finetune: int = 5
    lam: float = 2e-4
    decay: float = 0.0          # MDGF: 0 means the default (linear 1.0, exp 8.0)
    schedule: tuple[int, ...] = ()   # SDGF: () means default_schedule(n, m)

    def __post_init__(self):
        if self.kind not in RECIPES:
            raise GoldenError(f"unknown recipe {self.kind!r}; choose one of {', '.join(RECIPES)}")
        if self.m < 2 or not 1 <= self.n <= self.m:
            raise GoldenError(f"target {self.n}:{self.m} is invalid: need m >= 2 and 1 <= n <= m")
        if self.epochs < 1 or self.warmup < 0 or self.finetune < 0:
            raise GoldenError(f"epochs must be >= 1 and warm-up/fine-tune >= 0, not "
                              f"epochs={self.epochs}, warmup={self.warmup}, finetune={self.finetune}")
        if self.kind != "dense" and self.sparse_epochs < 1:
            raise GoldenError(f"no sparse phase: epochs={self.epochs} leaves none after "
                              f"warmup={self.warmup} and finetune={self.finetune}")
        if not (math.isfinite(self.lam) and self.lam >= 0):
            raise GoldenError(f"lam must be a finite value >= 0, not {self.lam!r}")
        if not (math.isfinite(self.decay) and self.decay >= 0):
            raise GoldenError(f"decay must be a finite value > 0 (or 0 for the default), not {self.decay!r}")
        if self.schedule and self.kind != "sdgf":
            raise GoldenError(f"a schedule {list(self.schedule)} applies to the sdgf recipe only, "
                              f"not to {self.kind!r}")
        if self.decay and not self.kind.startswith("mdgf"):
            raise GoldenError(f"a decay of {self.decay!r} applies to the mdgf recipes only, not to {self.kind!r}")
        if self.kind == "sdgf":
            stages = self.stages
            if stages[-1] != self.n:
                raise GoldenError(f"the SDGF schedule {list(stages)} does not end at the target n={self.n}")
            if any(not 1 <= s <= self.m for s in stages) or any(a < b for a, b in zip(stages, stages[1:])):
                raise GoldenError(f"the SDGF schedule {list(stages)} must be non-increasing values in 1..{self.m}")

    @property
    def sparse_epochs(self) -> int:
        return self.epochs - self.warmup - self.finetune

    @property
    def stages(self) -> tuple[int, ...]:
        return self.schedule or default_schedule(self.n, self.m)

    @property
    def beta_decay(self) -> float:
        if self.decay:
            return self.decay
        return 1.0 if self.kind == "mdgf-linear" else 8.0

    def beta(self, t: float) -> float:
        """MDGF's weight on pruned weights at sparse-phase time t in [0, 1]."""
        if self.kind == "mdgf-linear":
            return max(1.0 - self.beta_decay * t, 0.0)
        return math.exp(-self.beta_decay * t)

    def n_at(self, t: float) -> int:
        """The N in force at sparse-phase time t (SDGF stages; the target otherwise)."""
        if self.kind != "sdgf":
            return self.n
        stages = self.stages
        return stages[min(int(t * len(stages)), len(stages) - 1)]

    def phase(self, epoch: int, t_in_epoch: float = 0.0) -> tuple[str, float]:
        """``(phase, t)`` for ``epoch`` (0-based) plus a fraction of it: phase is "dense",
        "sparse" or "finetune"; t the sparse-phase time (0 before it, 1 after it)."""
        if self.kind == "dense" or epoch < self.warmup:
            return "dense", 0.0
        if epoch < self.warmup + self.sparse_epochs:
            return "sparse", (epoch - self.warmup + t_in_epoch) / self.sparse_epochs
        return "finetune", 1.0

    def forward_density(self, t: float, phase: str) -> float:
        """Fraction of a sparse layer's weights the forward pass multiplies by a non-zero
        at time ``t`` of ``phase``: what an N:M-aware trainer could skip. SR-STE and SDGF
        multiply by ``n_t / m``; mask decay multiplies every weight while ``beta > 0``."""
        if phase == "dense":
            return 1.0
        if phase == "finetune":
            return self.n / self.m
        if self.kind.startswith("mdgf") and self.beta(t) > 0:
            return 1.0
        return self.n_at(t) / self.m

    def to_dict(self) -> dict:
        """JSON-able fields, the schedule spelled out; :meth:`from_dict` reads it back."""
        return dataclasses.asdict(self) | {"schedule": list(self.stages)}

    @classmethod
    def from_dict(cls, values: dict) -> "Recipe":
        if not isinstance(values, dict) or set(values) - {f.name for f in dataclasses.fields(cls)}:
            raise GoldenError(f"not a recipe: {values!r}")
        values = dict(values)
        if values.get("kind") != "sdgf":
            values.pop("schedule", None)
        return cls(**values | ({"schedule": tuple(values["schedule"])} if "schedule" in values else {}))
