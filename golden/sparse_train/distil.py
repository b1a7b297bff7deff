"""N:M training on a language task: all-MiniLM-L6-v2 distilled into an N:M-sparse student.

Teacher: :class:`golden.minilm.SentenceEmbedder` (FP32, never trained). Student: a copy
of it whose 36 Linear layers (the query, key, value, attention-output and two
feed-forward projections of each of the six blocks) are trained to ``n:m`` with a
:class:`~golden.sparse_train.recipe.Recipe`, grouped along the input dimension (the
reduction axis the N:M core reads). The token, position and type embeddings stay dense
and frozen (each step would otherwise update 12 M embedding weights for the few rows the
batch touches); the LayerNorms and biases stay dense and train.

Data: sentences of :mod:`golden.corpus` (the standard library's docstrings), tokenised
with the model's tokenizer and truncated to ``budget.max_tokens``.

* loss: ``mean(1 - cos(student(s), teacher(s)))`` over a batch of train-split sentences
  (both embeddings are unit vectors, so this is half their squared distance);
* quality: the mean cosine of the student's test-split embeddings to the teacher's
  (the teacher scores 1.0).

The student starts from the teacher's weights, so its loss is 0 until a mask applies:
a dense warm-up adds nothing and the benchmark's budget has none. An *epoch* here is
``budget.steps`` steps of ``budget.batch`` sentences drawn, without replacement until
the train split is used up, from a permutation seeded by ``seed``; Adam with a constant
``budget.lr``; dropout off (the model stays in eval mode), so a seed reproduces a run
exactly on one thread.

Measured on every step (:class:`Distilled`):

* FLOPs: the matrix products the run computed (``dense``: every recipe multiplies dense
  weight tensors, so equal budgets give equal counts), and what an N:M-aware trainer
  would spend (``nm_aware``: the forward product and the input gradient at the
  recipe's forward density, :meth:`Recipe.forward_density`; the weight gradient dense,
  as SR-STE and MDGF need it) -- the FLOPs trade-off of arXiv 2402.04744;
* gradient noise, the effect that paper blames for SR-STE's loss at high sparsity: the
  norm of the gradient reaching the sparse layers' dense weights (mean over the sparse
  phase), its jitter (mean absolute change from one step to the next over its mean: the
  noise, not the trend), the share of its square that lands on pruned weights, and the
  fraction of mask positions that flip from one step to the next at the same n (SDGF's
  stage changes are not flips).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import GoldenError, minilm
from ..corpus import Corpus
from ..lowering import matmul_layers
from .estimators import SparseTraining, check_nm
from .recipe import Recipe

__all__ = ["EPOCHS", "DistilBudget", "Distilled", "teacher_embeddings", "distil", "student_cosine",
           "step_flops", "minilm_operands", "new_student", "batches"]


#: The epochs every recipe gets by default (``tessera train-nm --model minilm`` and the
#: benchmark): no dense warm-up (the student starts as the teacher, whose loss is 0),
#: five sparse epochs, one fine-tune epoch.
EPOCHS = {"epochs": 6, "warmup": 0, "finetune": 1}


@dataclass(frozen=True)
class DistilBudget:
    """How much training a run gets (the same for every recipe it is compared across).
    The defaults are ``tessera bench train-nm``'s: with :data:`EPOCHS` (6 epochs), 60
    steps of 32 sentences, 1,920 sentences (about 0.44 passes over the 4,390-sentence
    train split of Python 3.11). Measured on one torch thread (as the bench's workers
    run): about 1.0-1.1 CPU-s per step (SR-STE 1:8: 1.02, SDGF 1:16: 1.13; 18.5 tokens
    per sentence on average, so ``max_tokens`` barely matters) plus 5.6 CPU-s for the
    548-sentence test split: 52-82 CPU-s per run in the benchmark."""

    steps: int = 10              # steps per epoch
    batch: int = 32              # sentences per step
    lr: float = 1e-3             # Adam, constant
    max_tokens: int = 64         # truncation of every sentence (teacher and student)
    test_sentences: int = 0      # 0: the whole test split

    def __post_init__(self):
        for name in ("steps", "batch", "max_tokens"):
            if getattr(self, name) < 1:
                raise GoldenError(f"{name} must be >= 1, not {getattr(self, name)!r}")
        if self.max_tokens < 8 or self.max_tokens > 256:
            raise GoldenError(f"max_tokens must be in 8..256, not {self.max_tokens!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise GoldenError(f"lr must be a finite value > 0, not {self.lr!r}")
        if self.test_sentences < 0:
            raise GoldenError(f"test_sentences must be >= 0, not {self.test_sentences!r}")


@dataclass
class Distilled:
    """One distillation run: the student (exactly n:m), its quality and what it cost."""

    model: torch.nn.Module
    recipe: Recipe
    seed: int
    cosine: dict                 # mean, std, min over the test sentences
    loss_per_epoch: list[float]
    flops: dict                  # dense, nm_aware, teacher (targets), per_step_mean
    noise: dict                  # see the module docstring
    seconds: float               # wall time of the run
    cpu_seconds: float           # CPU time of this process (wall time on an idle core)
    steps: int
    trace: dict = field(default_factory=dict)   # per-step grad norm, pruned share, flips

    def summary(self) -> dict:
        return {"recipe": self.recipe.to_dict(), "seed": self.seed, "cosine": self.cosine,
                "loss_per_epoch": self.loss_per_epoch, "flops": self.flops, "noise": self.noise,
                "seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "steps": self.steps}


_TEACHER: dict[tuple[int, str], torch.Tensor] = {}


def teacher_embeddings(sentences, max_tokens: int, batch: int = 64) -> torch.Tensor:
    """The teacher's embeddings ``[len(sentences), 384]`` (remembered per sentence for the
    life of the process, so runs that share sentences compute them once)."""
    missing = [s for s in dict.fromkeys(sentences) if (max_tokens, s) not in _TEACHER]
    if missing:
        teacher = _teacher()
        with torch.no_grad():
            for i in range(0, len(missing), batch):
                chunk = missing[i:i + batch]
                for s, e in zip(chunk, teacher(minilm.pack_sentences(chunk, max_tokens))):
                    _TEACHER[(max_tokens, s)] = e.clone()
    return torch.stack([_TEACHER[(max_tokens, s)] for s in sentences]) if sentences else torch.empty(0, 384)


_TEACHER_MODEL: list = []


def _teacher():
    if not _TEACHER_MODEL:
        _TEACHER_MODEL.append(minilm.SentenceEmbedder().eval())
    return _TEACHER_MODEL[0]


def new_student() -> torch.nn.Module:
    """A fresh copy of the teacher with its embedding tables frozen."""
    student = minilm.SentenceEmbedder()
    emb = student.bert.embeddings
    for table in (emb.word_embeddings, emb.position_embeddings, emb.token_type_embeddings):
        table.weight.requires_grad_(False)
    return student


def _linear_macs(model) -> int:
    return sum(l.module.in_features * l.module.out_features for l in matmul_layers(model))


def step_flops(model, batch: int, tokens: int, density: float = 1.0) -> dict:
    """FLOPs of one training step on ``batch`` sequences of ``tokens`` (padded) tokens:
    ``forward`` (the Linear products at ``density`` plus attention's two products),
    ``dense`` (forward + input and weight gradients, all dense) and ``nm_aware``
    (the forward and input-gradient Linear products at ``density``, the rest dense)."""
    cfg = model.bert.config
    rows = batch * tokens
    linear = 2 * rows * _linear_macs(model)
    attention = cfg.num_hidden_layers * 2 * 2 * batch * tokens * tokens * cfg.hidden_size
    return {"forward": linear + attention, "linear": linear, "attention": attention,
            "dense": 3 * (linear + attention), "nm_aware": linear * (2 * density + 1) + 3 * attention}


def _sparse_layer_stats(training: SparseTraining, previous: dict):
    """(grad norm, pruned share of its square, flipped fraction) over the sparse layers."""
    total = pruned = 0.0
    flipped = counted = 0
    for name, p in training.params.items():
        grad = p.module_ref[0].parametrizations.weight.original.grad
        mask = p.frozen if p.phase == "finetune" else p.mask
        if grad is None or mask is None:
            continue
        g2 = grad.double().square()
        total += float(g2.sum())
        pruned += float((g2 * (1 - mask.double())).sum())
        keep, n = mask.bool(), (p.recipe.n if p.phase == "finetune" else p.recipe.n_at(p.t))
        if name in previous and previous[name][0] == n:       # SDGF's stage changes do not count
            flipped += int((previous[name][1] != keep).sum())
            counted += keep.numel()
        previous[name] = (n, keep)
    return math.sqrt(total), (pruned / total if total else 0.0), (flipped / counted if counted else None)


def student_cosine(model, sentences, max_tokens: int, batch: int = 64) -> dict:
    """Mean / std / min cosine of ``model``'s embeddings to the teacher's on ``sentences``."""
    reference = teacher_embeddings(sentences, max_tokens)
    got = []
    with torch.no_grad():
        for i in range(0, len(sentences), batch):
            got.append(model(minilm.pack_sentences(sentences[i:i + batch], max_tokens)))
    cos = torch.nn.functional.cosine_similarity(torch.cat(got), reference, dim=-1).double()
    return {"mean": float(cos.mean()), "std": float(cos.std()) if len(cos) > 1 else 0.0,
            "min": float(cos.min()), "sentences": len(sentences)}


#: Batches are cut from pools of this many batches sorted by length (less padding).
POOL = 8


def batches(sentences, budget: DistilBudget, seed: int):
    """Endless seeded batches: a permutation of ``sentences`` (a new one each time they
    are used up) cut into pools of :data:`POOL` batches; each pool is sorted by token
    count, cut into batches, and those are served in a seeded order."""
    if len(sentences) < budget.batch:
        raise GoldenError(f"the train split has {len(sentences)} sentences, fewer than one "
                          f"batch of {budget.batch}")
    tokenizer = minilm.tokenizer()
    lengths = [min(len(ids), budget.max_tokens) for ids in tokenizer(list(sentences))["input_ids"]]
    rng = np.random.default_rng(seed)
    size = budget.batch * POOL
    while True:
        order = rng.permutation(len(sentences))
        for start in range(0, len(order) - budget.batch + 1, size):
            pool = sorted(order[start:start + size], key=lambda i: (lengths[i], i))
            cut = [pool[i:i + budget.batch] for i in range(0, len(pool) - budget.batch + 1, budget.batch)]
            for b in rng.permutation(len(cut)):
                yield [sentences[i] for i in cut[b]]


def distil(recipe: Recipe, corpus: Corpus, seed: int, budget: DistilBudget = DistilBudget(), *,
           progress=None, trace: bool = False) -> Distilled:
    """Distil the teacher into a ``recipe`` student on ``corpus``'s train split; evaluate
    on its test split. ``progress(epoch, loss)`` after every epoch. Raises GoldenError
    when a layer cannot hold the recipe's n:m (its input dimension is not a multiple of m)."""
    missing = minilm.available()
    if missing:
        raise GoldenError(missing)
    started, cpu = time.monotonic(), time.process_time()
    torch.manual_seed(seed)
    student = new_student()
    training = SparseTraining(student, recipe)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=budget.lr)
    stream = batches(corpus.train, budget, seed)
    flops = {"dense": 0, "nm_aware": 0, "teacher": 0}
    norms, shares, flips, stages = [], [], [], []
    previous: dict = {}
    losses = []
    steps = recipe.epochs * budget.steps
    for epoch in range(recipe.epochs):
        total = 0.0
        for step in range(budget.steps):
            chunk = next(stream)
            training.set_phase(epoch, step / budget.steps)
            phase, t = recipe.phase(epoch, step / budget.steps)
            packed = minilm.pack_sentences(chunk, budget.max_tokens)
            target = teacher_embeddings(chunk, budget.max_tokens)
            opt.zero_grad()
            out = student(packed)
            loss = (1 - torch.nn.functional.cosine_similarity(out, target, dim=-1)).mean()
            loss.backward()
            norm, share, flip = _sparse_layer_stats(training, previous)
            opt.step()
            training.after_step()
            cost = step_flops(student, *packed.shape[::2], density=recipe.forward_density(t, phase))
            flops["dense"] += cost["dense"]
            flops["nm_aware"] += cost["nm_aware"]
            flops["teacher"] += cost["forward"]
            if phase == "sparse":
                norms.append(norm)
                shares.append(share)
                stages.append(recipe.n_at(t))
                if flip is not None:
                    flips.append(flip)
            total += float(loss.detach())
        losses.append(total / budget.steps)
        if progress:
            progress(epoch, losses[-1])
    model = training.finish().eval()
    if recipe.kind != "dense":
        check_nm(model, recipe.n, recipe.m)
    test = corpus.test[:budget.test_sentences] if budget.test_sentences else corpus.test
    cosine = student_cosine(model, test, budget.max_tokens)
    a = np.array(norms) if len(norms) > 1 else np.ones(2)
    noise = {"grad_norm_mean": float(a.mean()),
             "grad_norm_jitter": float(np.abs(np.diff(a)).mean() / a.mean()),
             "pruned_grad_share": float(np.mean(shares)) if shares else 0.0,
             "mask_flip_rate": float(np.mean(flips)) if flips else 0.0}
    flops["per_step_mean"] = flops["dense"] / steps
    result = Distilled(model, recipe, seed, cosine, losses, flops, noise,
                       round(time.monotonic() - started, 1), round(time.process_time() - cpu, 1), steps)
    if trace:
        result.trace = {"grad_norm": norms, "pruned_grad_share": shares, "mask_flip_rate": flips,
                        "n": stages}
    return result


def minilm_operands(model, name: str, sentence: str, max_tokens: int = 64):
    """int8 ``W[out, K]`` and ``X[K, tokens]`` of layer ``name`` of a student on one
    sentence (no padding: every column is a real token)."""
    from .export import layer_operands

    return layer_operands(model, name, minilm.pack_sentences([sentence], max_tokens))

