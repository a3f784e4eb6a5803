"""QuerierContrastiveLoss: hand-computed value, cluster scope, FIFO, empty memory, views, DDP."""
import math
import os
import tempfile

import pytest
import torch
import torch.multiprocessing as mp

from qlearn.contrastive import QuerierContrastiveLoss


def _toy(**kw):
    """d = view_dim = 2; view 0 is the identity, view 1 swaps the coordinates (both clusters)."""
    args = dict(dim=2, n_queriers=3, n_clusters=2, n_views=2, view_dim=2, memory_size=4,
                temperature=0.5)
    args.update(kw)
    qc = QuerierContrastiveLoss(**args)
    with torch.no_grad():
        qc.weight.zero_()
        qc.weight[:, 0] = torch.eye(2)
        qc.weight[:, 1] = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    return qc


def _fill_cluster0(qc):
    # rows: [view0 vector, view1 vector] for (querier, cluster)
    e = torch.tensor([[[0.0, 1.0], [1.0, 0.0]],
                      [[0.0, 1.0], [1.0, 2.0]],
                      [[1.0, 0.0], [0.0, 3.0]]])
    qc.write(e, torch.tensor([0, 0, 1]), torch.tensor([0, 0, 0]))


def test_loss_equals_hand_computed_value():
    qc = _toy().eval()
    _fill_cluster0(qc)
    # z = (1, 0), querier 0, cluster 0  ->  e0 = (1, 0), e1 = (0, 1)
    # view-1 prototypes: q0 mean((1,0),(1,2)) = (1,1); q1 (0,3); q2 empty = uniform (1,1)
    #   cos(e0, .) = 1/sqrt2, 0, 1/sqrt2  -> logits /0.5: sqrt2, 0, sqrt2
    # view-0 prototypes: q0 (0,1); q1 (1,0); q2 uniform -> cos(e1, .) = 1, 0, 1/sqrt2 -> 2, 0, sqrt2
    r2 = math.sqrt(2)
    ce_01 = -r2 + math.log(2 * math.exp(r2) + 1)
    ce_10 = -2 + math.log(math.exp(2) + 1 + math.exp(r2))
    expected = (ce_01 + ce_10) / 2
    loss = qc(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), torch.tensor([0]))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_only_same_cluster_queriers_compete():
    qc = _toy().eval()
    _fill_cluster0(qc)
    z, y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    before = qc(z, y, torch.tensor([0])).item()
    # memories of another cluster do not change a cluster-0 sample's loss ...
    qc.write(torch.randn(5, 2, 2), torch.tensor([0, 1, 2, 1, 2]), torch.ones(5, dtype=torch.long))
    assert qc(z, y, torch.tensor([0])).item() == pytest.approx(before, abs=1e-6)
    # ... but another querier of the same cluster does
    qc.write(torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]), torch.tensor([2]), torch.tensor([0]))
    assert qc(z, y, torch.tensor([0])).item() != pytest.approx(before, abs=1e-3)
    # and a sample of cluster 1 sees cluster 1's memory only: the same z gives another value
    assert qc(z, y, torch.tensor([1])).item() != pytest.approx(before, abs=1e-3)


def test_empty_memory_gives_log_n_and_training_writes():
    qc = QuerierContrastiveLoss(dim=8, n_queriers=5, n_clusters=3, view_dim=4, memory_size=3)
    z, y, c = torch.randn(4, 8), torch.tensor([0, 1, 1, 4]), torch.tensor([2, 2, 0, 2])
    qc.eval()
    assert qc(z, y, c).item() == pytest.approx(math.log(5), rel=1e-6)  # all prototypes identical
    assert qc.count.sum() == 0  # eval mode never writes
    qc.train()
    qc(z, y, c)
    assert qc.count[2].tolist() == [1, 1, 0, 0, 1] and qc.count[0, 1] == 1 and qc.count.sum() == 4
    e = qc.project(z, c).detach()
    torch.testing.assert_close(qc.memory[2, 1, :, 0], e[1])  # the sample's own cluster and querier
    torch.testing.assert_close(qc.prototypes()[1], torch.full((5, 2, 4), 1e-6))  # untouched cluster


def test_centering_subtracts_a_running_mean_of_z():
    torch.manual_seed(0)
    qc = QuerierContrastiveLoss(dim=8, n_queriers=3, view_dim=4, memory_size=8).train()
    y, c = torch.tensor([0, 1, 2, 0]), torch.zeros(4, dtype=torch.long)
    z1 = torch.randn(4, 8) + 5.0  # a large common component, as in a language model's states
    qc(z1, y, c)
    # the first batch starts the centre, so the stored vectors are already centred ...
    torch.testing.assert_close(qc.z_mean, z1.mean(0))
    expected = torch.einsum("vpd,bd->bvp", qc.weight[0], z1 - z1.mean(0)) + qc.bias[0]
    torch.testing.assert_close(qc.memory[0, 1, :, 0], expected[1].detach())
    # ... later batches move it by (1 - momentum)
    z2 = torch.randn(4, 8) - 3.0
    qc(z2, y, c)
    torch.testing.assert_close(qc.z_mean, 0.9 * z1.mean(0) + 0.1 * z2.mean(0))
    off = QuerierContrastiveLoss(dim=8, n_queriers=3, view_dim=4, center=False).train()
    off(z1, y, c)  # the official loss: no centre
    assert off.z_mean.abs().sum() == 0
    torch.testing.assert_close(off.memory[0, 1, :, 0], off.project(z1, c)[1].detach())


def test_fifo_memory_keeps_the_last_k():
    qc = _toy(memory_size=2).eval()
    vecs = [torch.full((1, 2, 2), float(i)) for i in (1, 2, 3)]
    for v in vecs:
        qc.write(v, torch.tensor([1]), torch.tensor([0]))
    assert qc.count[0, 1] == 2 and qc.pointer[0, 1] == 1
    assert qc.memory[0, 1, 0, :, 0].tolist() == [3.0, 2.0]  # slot 0 overwritten by the 3rd write
    torch.testing.assert_close(qc.prototypes()[0, 1], torch.full((2, 2), 2.5))  # mean of 2 and 3
    # two samples of one (cluster, querier) in one batch take consecutive slots
    qc.write(torch.cat([vecs[0], vecs[1]]), torch.tensor([2, 2]), torch.tensor([1, 1]))
    assert qc.memory[1, 2, 0, :, 0].tolist() == [1.0, 2.0] and qc.pointer[1, 2] == 0


def test_loss_is_clipped():
    qc = _toy(temperature=0.01, clip=10.0).eval()
    qc.write(torch.tensor([[[0.0, 1.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]]),
             torch.tensor([0, 1]), torch.tensor([0, 0]))
    # z = (1, 0): e1 = (0, 1) matches querier 0's view-0 prototype exactly, so for label 1 the
    # (view 1 -> view 0) cross-entropy is about 1/T = 100 and the average about 50
    loss = qc(torch.tensor([[1.0, 0.0]]), torch.tensor([1]), torch.tensor([0]))
    assert loss.item() == pytest.approx(10.0)


@pytest.mark.parametrize("trainable", [True, False])
def test_views_trainable_or_frozen(trainable):
    torch.manual_seed(0)
    qc = QuerierContrastiveLoss(dim=6, n_queriers=3, n_clusters=2, view_dim=4, memory_size=4,
                                views_trainable=trainable).train()
    qc(torch.randn(6, 6), torch.tensor([0, 1, 2, 0, 1, 2]), torch.zeros(6, dtype=torch.long))
    z = torch.randn(3, 6, requires_grad=True)
    qc(z, torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.long)).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert qc.weight.requires_grad is trainable and qc.bias.requires_grad is trainable
    if trainable:
        assert qc.weight.grad[0].abs().sum() > 0  # the used cluster's views learn
        assert qc.weight.grad[1].abs().sum() == 0  # the unused cluster's do not
    else:
        assert qc.weight.grad is None
        assert len([p for p in qc.parameters() if p.requires_grad]) == 0


def test_one_view_matches_its_own_prototypes():
    qc = QuerierContrastiveLoss(dim=4, n_queriers=2, n_views=1, view_dim=4, temperature=1.0).eval()
    with torch.no_grad():
        qc.weight[0, 0] = torch.eye(4)
    qc.write(torch.eye(4)[:2, None], torch.tensor([0, 1]), torch.tensor([0, 0]))
    loss = qc(torch.eye(4)[:1], torch.tensor([0]), torch.tensor([0]))
    assert loss.item() == pytest.approx(-1 + math.log(math.e + 1), rel=1e-6)


def test_bad_labels_name_the_problem():
    qc = QuerierContrastiveLoss(dim=4, n_queriers=2, n_clusters=1, view_dim=4)
    with pytest.raises(ValueError, match="querier labels"):
        qc(torch.randn(1, 4), torch.tensor([2]), torch.tensor([0]))
    with pytest.raises(ValueError, match="cluster ids"):
        qc(torch.randn(1, 4), torch.tensor([0]), torch.tensor([1]))


# ---- DDP: two CPU processes (gloo) end with identical memories and weights ----

def _ddp_data(rank, steps=4):
    gen = torch.Generator().manual_seed(100 + rank)  # different data on each rank
    n = 3 + rank  # unequal batch sizes too
    return [(torch.randn(n, 8, generator=gen), torch.randint(0, 3, (n,), generator=gen),
             torch.randint(0, 2, (n,), generator=gen)) for _ in range(steps)]


def _ddp_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)  # same init on both ranks

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Linear(8, 8)
            self.qc = QuerierContrastiveLoss(dim=8, n_queriers=3, n_clusters=2, view_dim=4,
                                             memory_size=5)

        def forward(self, x, y, c):
            return self.qc(self.encoder(x), y, c)

    net = DDP(Net(), broadcast_buffers=False)  # memories must agree by all-gather alone
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for x, y, c in _ddp_data(rank):
        opt.zero_grad()
        net(x, y, c).backward()
        opt.step()
    state = {k: v.detach().clone() for k, v in net.module.state_dict().items()}
    torch.save(state, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_ddp_two_processes_identical_memories_and_weights():
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_ddp_worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, join=True)
        s0 = torch.load(os.path.join(tmp, "rank0.pt"))
        s1 = torch.load(os.path.join(tmp, "rank1.pt"))
    assert s0.keys() == s1.keys()
    for k in s0:
        torch.testing.assert_close(s0[k], s1[k], msg=f"{k} differs between ranks")
    expected = torch.zeros(2, 3, dtype=torch.long)  # every rank's samples were written
    for rank in (0, 1):
        for _, y, c in _ddp_data(rank):
            expected.index_put_((c, y), torch.ones_like(y), accumulate=True)
    assert s0["qc.count"].tolist() == expected.clamp(max=5).tolist()
    assert s0["qc.memory"].abs().sum() > 0


def test_dummy_slots_reproduce_the_official_n_plus_2_softmax():
    """dummy_slots=2: two constant negatives in every softmax, so an untrained loss is log(N+2);
    they are never a target and never written."""
    z, y, c = torch.randn(4, 8), torch.tensor([0, 1, 1, 4]), torch.tensor([2, 2, 0, 2])
    qc = QuerierContrastiveLoss(dim=8, n_queriers=5, n_clusters=3, view_dim=4, memory_size=3,
                                dummy_slots=2)
    assert qc.eval()(z, y, c).item() == pytest.approx(math.log(7), rel=1e-6)
    assert qc.logits(qc.project(z, c), c).shape == (4, 2, 2, 7)
    qc.train()(z, y, c)
    assert qc.memory.shape[1] == 5 and qc.count.sum() == 4  # written slots are the queriers' only
    # a dummy slot equals an empty querier's prototype: the uniform direction
    logits = qc.logits(qc.project(z, c), c)
    torch.testing.assert_close(logits[..., 5], logits[..., 6])
    torch.testing.assert_close(logits[0, ..., 5], logits[0, ..., 3])  # querier 3 is empty in cluster 2
    with pytest.raises(ValueError, match="dummy_slots must be >= 0"):
        QuerierContrastiveLoss(dim=8, n_queriers=2, dummy_slots=-1)


def test_paper_recipes_use_the_official_slots():
    from pathlib import Path

    from qlearn.train import TrainConfig

    for path in sorted((Path(__file__).resolve().parents[1] / "configs" / "paper").glob("*.yaml")):
        assert TrainConfig.from_yaml(path).contrastive.qc_dummy_slots == 2, path.name


def test_the_loss_reads_its_own_config():
    """ContrastiveConfig (the recipe's contrastive: block) builds the loss; the trainer's λ is
    the loss's own qc_weight, and build_model passes the recipe's block through unchanged."""
    from qlearn.contrastive import ContrastiveConfig
    from qlearn.train import TrainConfig, build_model
    from qlearn.trainer import QARTrainingModule

    cfg = ContrastiveConfig(n_views=3, view_dim=4, memory_size=5, temperature=0.2, qc_weight=0.3,
                            qc_clip=4.0, qc_center=False, views_trainable=False, qc_dummy_slots=2)
    qc = QuerierContrastiveLoss.from_config(cfg, dim=8, n_queriers=3, n_clusters=2)
    assert qc.config is cfg
    assert (qc.n_views, qc.view_dim, qc.memory_size, qc.temperature, qc.clip, qc.center,
            qc.dummy_slots, qc.weight.requires_grad) == (3, 4, 5, 0.2, 4.0, False, 2, False)
    assert tuple(qc.memory.shape) == (2, 3, 3, 5, 4)
    assert QuerierContrastiveLoss(dim=8, n_queriers=3, view_dim=4).config.view_dim == 4
    assert QARTrainingModule(torch.nn.Identity(), qc).qc_weight == 0.3
    assert QARTrainingModule(torch.nn.Identity(), None).qc_weight == 0.0
    tc = TrainConfig.from_dict({"source": "synthetic", "base_model": "tiny", "precision": "fp32",
                                "model": {"rank": 4, "lora_r": 2},
                                "contrastive": {"view_dim": 8, "memory_size": 4, "qc_weight": 0}})
    module, _ = build_model(tc, n_queriers=3, n_clusters=2)
    assert module.contrastive.config == tc.contrastive and module.qc_weight == 0.0
    assert module.contrastive.view_dim == 8 and module.contrastive.n_clusters == 2
    with pytest.raises(ValueError, match="contrastive.view_dim=0"):
        ContrastiveConfig(view_dim=0)
