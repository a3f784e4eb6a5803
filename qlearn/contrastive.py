"""The querier-contrastive loss with multi-view augmentation (docs/method.md §5).

Each training window gives one pooled vector ``z`` (the specific stream's responder tokens,
``QuerierAwareLM(...).querier_repr``). For its cluster ``c`` and querier ``y``:

0. **centering** (qlearn's, ``center=True``; off in the official code): ``z`` minus a running mean
   of the pooled vectors (momentum 0.9, as DINO centres its teacher). A language model's pooled
   states are anisotropic (two windows' cosine is ~0.99 for SmolLM2), so without it every view
   sees nearly the same vector, all cosines are ~1 and the loss stays at chance for hundreds of
   steps; with it a short run lowers the loss (tests/test_train.py);
1. **views**: ``n_views`` linear maps per cluster, ``d -> view_dim`` with bias, give ``e_v = P_v,c(z)``;
2. **prototypes**: a FIFO memory holds the last ``memory_size`` projected vectors per
   (cluster, querier, view); a prototype is their mean (an empty memory gives a constant vector,
   the uniform direction once normalized);
3. **logits**: the cosine of ``e_v`` with the prototypes of view ``w != v`` of every querier *of the
   same cluster*, divided by the temperature; cross-entropy with target ``y``, averaged over the
   view pairs (with one view, a view is matched against its own prototypes) and the batch, then
   clipped to ``[0, clip]``. ``dummy_slots=2`` reproduces the official code, whose softmax also
   runs over two never-written prototype slots (the constant, uniform-direction vector): they add
   two fixed negatives, so an untrained loss is log(N+2) instead of log(N). qlearn's default is 0
   (no slot that no querier owns); the paper recipes set 2;
4. after the loss, the (detached) ``e_v`` are written into the memories and the centre is
   updated. Under ``torch.distributed`` they are all-gathered first, so every rank holds the same
   memory and centre; in one process nothing distributed is called.

The settings are a :class:`ContrastiveConfig`, the ``contrastive:`` block of a recipe (the model's
architecture is ``model:``, :class:`qlearn.model.QARConfig`); the loss is built from it with
:meth:`QuerierContrastiveLoss.from_config`. Its weight λ (``contrastive.qc_weight``) is applied by
the trainer: ``L = L_LM + λ·L_QC``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

EMPTY = 1e-6  # value of an empty memory's prototype (as in the official code)


@dataclass
class ContrastiveConfig:
    """The querier-contrastive loss of a run (the ``contrastive:`` block of a recipe; docs/method.md §5).

    n_views: projection views per cluster (1 = the "w/o multi-view" ablation).
    view_dim: output size of each view.
    views_trainable: False reproduces the official code (views frozen at their random init).
    memory_size: K, vectors kept per (cluster, querier, view).
    temperature: T of the cosine logits.
    qc_weight: λ in ``L = L_LM + λ·L_QC`` (0 = the "w/o contrastive" ablation: the loss is still
        measured and its memories written, without gradient).
    qc_clip: the loss is clipped to ``[0, qc_clip]``.
    qc_center: qlearn's centering of the pooled vectors (False = the official code).
    qc_dummy_slots: constant prototype slots in the softmax (2 = the official code's N+2 slots, as
        in the paper recipes; 0 = qlearn's default). See docs/protocol.md.
    """
    n_views: int = 2
    view_dim: int = 512
    views_trainable: bool = True
    memory_size: int = 512
    temperature: float = 0.1
    qc_weight: float = 0.5
    qc_clip: float = 10.0
    qc_center: bool = True
    qc_dummy_slots: int = 0

    def __post_init__(self):
        from .errors import ConfigError

        rules = [("qc_weight", self.qc_weight >= 0, ">= 0 (0 = the 'w/o contrastive' ablation; a "
                  "negative weight would maximise the contrastive loss)"),
                 ("temperature", self.temperature > 0, "> 0"),
                 ("n_views", self.n_views >= 1, ">= 1"), ("view_dim", self.view_dim >= 1, ">= 1"),
                 ("memory_size", self.memory_size >= 1, ">= 1"),
                 ("qc_clip", self.qc_clip is None or self.qc_clip > 0, "> 0"),
                 ("qc_dummy_slots", self.qc_dummy_slots >= 0, ">= 0 (0 = qlearn, 2 = the official "
                  "code's two constant prototype slots)")]
        for name, ok, rule in rules:
            if not ok:
                raise ConfigError(f"contrastive.{name}={getattr(self, name)!r}: must be {rule}; set "
                                  f"contrastive.{name} in the recipe or with --set contrastive.{name}=...")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "ContrastiveConfig") -> "ContrastiveConfig":
        """Checked like every recipe block (:func:`qlearn.config.build`): unknown keys, types, ranges."""
        from .config import build

        return build(cls, d, where, prefix="contrastive.")


CONTRASTIVE_FIELDS = tuple(f.name for f in dataclasses.fields(ContrastiveConfig))


class QuerierContrastiveLoss(nn.Module):
    """``loss = qc(z, querier, cluster)``; memories are written when the module is in train mode.

    Args:
        dim: size of the pooled representation ``z``.
        n_queriers: queriers of the responder (labels ``0..n_queriers-1``).
        n_clusters: query clusters (1 = the "w/o clustering" ablation).
        n_views: projection views per cluster (1 = the "w/o multi-view" ablation).
        view_dim: output size of each view.
        memory_size: K, vectors kept per (cluster, querier, view).
        temperature: T of the cosine logits.
        clip: the loss is clipped to ``[0, clip]``.
        views_trainable: False reproduces the official code (views frozen at their random init).
        init_std: the views' weights start as N(0, init_std), biases at zero.
        center: subtract a running mean of ``z`` before the views (False = official code).
        dummy_slots: constant prototype slots added to every softmax as extra negatives (2 =
            official code, 0 = none; never a target, never written).
    """

    CENTER_MOMENTUM = 0.9

    def __init__(self, dim: int, n_queriers: int, n_clusters: int = 1, n_views: int = 2,
                 view_dim: int = 512, memory_size: int = 512, temperature: float = 0.1,
                 clip: float = 10.0, views_trainable: bool = True, init_std: float = 0.02,
                 center: bool = True, dummy_slots: int = 0):
        super().__init__()
        if n_queriers < 1 or n_clusters < 1 or n_views < 1 or memory_size < 1:
            raise ValueError(f"QuerierContrastiveLoss needs n_queriers, n_clusters, n_views and "
                             f"memory_size >= 1, got {n_queriers}, {n_clusters}, {n_views}, {memory_size}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if dummy_slots < 0:
            raise ValueError(f"dummy_slots must be >= 0 (2 = the official code), got {dummy_slots}")
        self.dummy_slots = int(dummy_slots)
        # its settings as a recipe block (from_config replaces it with the recipe's own, λ included)
        self.config = ContrastiveConfig(n_views=n_views, view_dim=view_dim,
                                        views_trainable=views_trainable, memory_size=memory_size,
                                        temperature=temperature, qc_clip=clip, qc_center=center,
                                        qc_dummy_slots=int(dummy_slots))
        self.dim, self.n_queriers, self.n_clusters = dim, n_queriers, n_clusters
        self.n_views, self.view_dim, self.memory_size = n_views, view_dim, memory_size
        self.temperature, self.clip, self.center = temperature, clip, center
        # views[c, v] is the linear map P_v,c: z -> weight @ z + bias
        self.weight = nn.Parameter(torch.randn(n_clusters, n_views, view_dim, dim) * init_std,
                                   requires_grad=views_trainable)
        self.bias = nn.Parameter(torch.zeros(n_clusters, n_views, view_dim),
                                 requires_grad=views_trainable)
        self.register_buffer("memory", torch.zeros(n_clusters, n_queriers, n_views, memory_size, view_dim))
        self.register_buffer("count", torch.zeros(n_clusters, n_queriers, dtype=torch.long))  # filled slots
        self.register_buffer("pointer", torch.zeros(n_clusters, n_queriers, dtype=torch.long))  # next slot
        self.register_buffer("z_mean", torch.zeros(dim))  # running mean of z (used when center=True)

    @classmethod
    def from_config(cls, config: ContrastiveConfig, dim: int, n_queriers: int, n_clusters: int = 1,
                    init_std: float = 0.02) -> "QuerierContrastiveLoss":
        """The loss of a :class:`ContrastiveConfig` for pooled vectors of size ``dim``; the config
        is kept as ``.config`` (the trainer reads its ``qc_weight``). Every loss has a ``.config``:
        one built from keyword arguments gets theirs, with the default ``qc_weight``."""
        loss = cls(dim, n_queriers, n_clusters, n_views=config.n_views, view_dim=config.view_dim,
                   memory_size=config.memory_size, temperature=config.temperature,
                   clip=config.qc_clip, views_trainable=config.views_trainable, init_std=init_std,
                   center=config.qc_center, dummy_slots=config.qc_dummy_slots)
        loss.config = config
        return loss

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, n_queriers={self.n_queriers}, n_clusters={self.n_clusters}, "
                f"n_views={self.n_views}, view_dim={self.view_dim}, memory_size={self.memory_size}, "
                f"temperature={self.temperature}, clip={self.clip}, "
                f"views_trainable={self.weight.requires_grad}, center={self.center}"
                + (f", dummy_slots={self.dummy_slots}" if self.dummy_slots else ""))

    def project(self, z: torch.Tensor, cluster: torch.Tensor) -> torch.Tensor:
        """``[B, d] -> [B, n_views, view_dim]`` through each sample's own cluster's views
        (after centering, when on)."""
        z = torch.nan_to_num(z).to(self.weight.dtype)
        if self.center:
            z = z - self.z_mean.to(z.dtype)
        return torch.einsum("bvpd,bd->bvp", self.weight[cluster], z) + self.bias[cluster]

    def prototypes(self) -> torch.Tensor:
        """``[n_clusters, n_queriers, n_views, view_dim]``: memory means, ``EMPTY`` where empty."""
        count = self.count[:, :, None, None].to(self.memory.dtype)
        mean = self.memory.sum(dim=3) / count.clamp(min=1)
        return torch.where(count > 0, mean, torch.full_like(mean, EMPTY))

    def logits(self, e: torch.Tensor, cluster: torch.Tensor) -> torch.Tensor:
        """``[B, n_views, n_views, n_queriers + dummy_slots]``: cosine(e_v, prototype_w of each
        querier, then of each dummy slot) / T.

        Only the prototypes of the sample's own cluster are compared: queriers compete only with
        the queriers that asked similar queries.
        """
        protos = self.prototypes()[cluster]  # [B, N, V, P]
        if self.dummy_slots:  # the official code's never-written slots N, N+1: constant vectors
            b, _, v, p = protos.shape
            protos = torch.cat([protos, protos.new_full((b, self.dummy_slots, v, p), EMPTY)], dim=1)
        protos = F.normalize(protos, dim=-1)
        return torch.einsum("bvp,bnwp->bvwn", F.normalize(e, dim=-1), protos) / self.temperature

    def forward(self, z: torch.Tensor, querier: torch.Tensor, cluster: torch.Tensor) -> torch.Tensor:
        querier, cluster = querier.long(), cluster.long()
        if querier.min() < 0 or querier.max() >= self.n_queriers:
            raise ValueError(f"querier labels must lie in 0..{self.n_queriers - 1}, got "
                             f"{querier.tolist()}: the loss was built for {self.n_queriers} queriers")
        if cluster.min() < 0 or cluster.max() >= self.n_clusters:
            raise ValueError(f"cluster ids must lie in 0..{self.n_clusters - 1}, got {cluster.tolist()}: "
                             "the loss was built for fewer clusters than the data has")
        if self.center and self.training and self.count.sum() == 0:  # empty memories: start the
            with torch.no_grad():  # centre at this batch's mean, so no uncentred vector is stored
                self.z_mean.copy_(torch.nan_to_num(_all_gather(z.detach())[0]).mean(0))
        e = self.project(z, cluster)
        logits = self.logits(e.float(), cluster)  # [B, V, W, N]
        V = self.n_views
        pairs = [(v, w) for v in range(V) for w in range(V) if v != w] or [(0, 0)]
        losses = [F.cross_entropy(logits[:, v, w], querier) for v, w in pairs]
        loss = torch.stack(losses).mean().clamp(0.0, self.clip)
        if self.training:
            self.write(e.detach(), querier, cluster, z.detach() if self.center else None)
        return loss

    @torch.no_grad()
    def write(self, e: torch.Tensor, querier: torch.Tensor, cluster: torch.Tensor,
              z: torch.Tensor | None = None) -> None:
        """FIFO-write projected views ``[B, V, P]`` into the memories and, given the pooled
        vectors ``z``, update the centre (all ranks' samples under DDP)."""
        if z is None:
            e, querier, cluster = _all_gather(e, querier, cluster)
        else:
            e, querier, cluster, z = _all_gather(e, querier, cluster, z)
            mean = torch.nan_to_num(z).to(self.z_mean.dtype).mean(0)
            self.z_mean.lerp_(mean, 1 - self.CENTER_MOMENTUM)
        e = e.to(self.memory.dtype)
        for i in range(e.shape[0]):  # sequential: two samples of one (c, y) take consecutive slots
            c, y = cluster[i], querier[i]
            slot = self.pointer[c, y]
            self.memory[c, y, :, slot] = e[i]
            self.pointer[c, y] = (slot + 1) % self.memory_size
            self.count[c, y] = torch.clamp(self.count[c, y] + 1, max=self.memory_size)

    def reset_memory(self) -> None:
        self.z_mean.zero_()
        self.memory.zero_()
        self.count.zero_()
        self.pointer.zero_()


def _all_gather(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Concatenate each tensor's rows from every rank, in rank order; the identity in one process."""
    # plain torch.distributed, not accelerate.utils.gather: ranks hold different row counts, and
    # accelerate's pad_across_processes + gather would leave the padding rows to strip by hand anyway
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(tensors)
    world = dist.get_world_size()
    n = torch.tensor([tensors[0].shape[0]], device=tensors[0].device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    out = []
    for t in tensors:
        padded = t.new_zeros((max(sizes),) + t.shape[1:])
        padded[: t.shape[0]] = t
        parts = [torch.zeros_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        out.append(torch.cat([p[:s] for p, s in zip(parts, sizes)]))
    return out
