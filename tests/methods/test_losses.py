"""The selective contrastive loss against a naive loop, a closed form and gradcheck."""

import math

import pytest
import torch
import torch.nn.functional as F

from reidlib.config import load_config
from reidlib.methods.losses import positive_weights, scl_total_loss, selective_contrastive_loss
from reidlib.methods.scl import Selection


def naive_loss(feats, bank, pos_idx, neg_idx, temperature, lambda_t, alpha):
    """One anchor, one positive at a time, written as the paper states it."""
    k = pos_idx.shape[1] - 1
    total = 0.0
    for i in range(feats.shape[0]):
        slots = list(pos_idx[i]) + list(neg_idx[i])
        logits = torch.stack([feats[i] @ bank[j] for j in slots]) / temperature
        denom = torch.logsumexp(logits, dim=0)
        for j in range(k + 1):
            c = lambda_t if j == 0 else alpha * (1 - lambda_t) / k
            total = total + c * -(logits[j] - denom)
    return total / feats.shape[0]


def random_case(b=5, n=40, d=12, k=3, m=9, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=1)
    bank = F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)
    perm = torch.stack([torch.randperm(n, generator=g)[: 1 + k + m] for _ in range(b)])
    return feats.to(device), bank.to(device), perm[:, : 1 + k].to(device), perm[:, 1 + k :].to(device)


@pytest.mark.parametrize("k,m", [(3, 9), (0, 5), (1, 0), (7, 20)])
def test_matches_naive_loop(k, m, device):
    feats, bank, pos, neg = random_case(k=k, m=m, seed=k + m, device=device)
    kw = dict(temperature=0.1, lambda_t=0.5, alpha=1.75)
    got = selective_contrastive_loss(feats, bank, pos, neg, **kw)
    want = naive_loss(*(x.cpu() for x in (feats, bank, pos, neg)), **kw)
    assert got.device.type == device.type
    assert torch.allclose(got.cpu(), want, atol=1e-10)


@pytest.mark.parametrize("k,m", [(7, 500), (0, 10), (3, 0)])
def test_identical_bank_rows_closed_form(k, m):
    # Every logit equal: each -log softmax term is log(1+k+m), so the loss is log(1+k+m) * sum(c).
    b, d = 4, 16
    feats = F.normalize(torch.randn(b, d, dtype=torch.float64), dim=1)
    bank = F.normalize(torch.randn(1, d, dtype=torch.float64), dim=1).expand(1 + k + m, d)
    idx = torch.arange(1 + k + m).expand(b, -1)
    lt, alpha = 0.3, 1.75
    got = selective_contrastive_loss(
        feats, bank, idx[:, : 1 + k], idx[:, 1 + k :], temperature=0.07, lambda_t=lt, alpha=alpha
    )
    c_sum = lt + (alpha * (1 - lt) if k else 0.0)
    assert got.item() == pytest.approx(math.log(1 + k + m) * c_sum, rel=1e-12)


def test_weights():
    assert positive_weights(0, lambda_t=0.5, alpha=1.75).tolist() == [0.5]
    c = positive_weights(7, lambda_t=0.5, alpha=1.75)
    assert c[0] == 0.5 and torch.allclose(c[1:], torch.full((7,), 1.75 * 0.5 / 7, dtype=c.dtype))


def test_gradcheck(device):
    feats, bank, pos, neg = random_case(b=3, n=20, d=6, k=2, m=5, device=device)
    feats.requires_grad_(True)
    fn = lambda x: selective_contrastive_loss(  # noqa: E731
        x, bank, pos, neg, temperature=0.5, lambda_t=0.4, alpha=1.5
    )
    assert torch.autograd.gradcheck(fn, (feats,))


def test_gradient_pulls_toward_positives():
    feats, bank, pos, neg = random_case(b=1, n=30, d=8, k=2, m=10)
    feats.requires_grad_(True)
    selective_contrastive_loss(feats, bank, pos, neg, temperature=0.1, lambda_t=0.5, alpha=1.0).backward()
    step = -feats.grad[0]  # a descent step raises the similarity to the own slot
    assert step @ bank[pos[0, 0]] > 0


def test_total_mixes_part_and_global():
    feats, bank, pos, neg = random_case()
    parts = F.normalize(torch.randn_like(feats), dim=1)
    kw = dict(temperature=0.1, lambda_t=0.5, alpha=1.75)
    scl_cfg = load_config(overrides=dict(lambda_p=0.25, **kw)).scl
    total, lp, lg = scl_total_loss(feats, parts, bank, Selection(pos, neg), scl_cfg)
    assert lp == selective_contrastive_loss(parts, bank, pos, neg, **kw)
    assert lg == selective_contrastive_loss(feats, bank, pos, neg, **kw)
    assert torch.allclose(total, 0.25 * lp + 0.75 * lg)


def naive_masked_loss(feats, bank, pos_idx, neg_idx, pos_mask, temperature, lambda_t, alpha):
    """One anchor at a time: dropped candidates leave the softmax, the kept K_i share the weight."""
    total = 0.0
    for i in range(feats.shape[0]):
        kept = [int(j) for j, keep in zip(pos_idx[i], pos_mask[i]) if keep]
        slots = kept + [int(j) for j in neg_idx[i]]
        logits = torch.stack([feats[i] @ bank[j] for j in slots]) / temperature
        denom = torch.logsumexp(logits, dim=0)
        k_i = len(kept) - 1
        for j in range(len(kept)):
            c = lambda_t if j == 0 else alpha * (1 - lambda_t) / k_i
            total = total + c * -(logits[j] - denom)
    return total / feats.shape[0]


def test_masked_loss_matches_naive_loop(device):
    """A positive mask drops columns from the softmax and renormalises the neighbours' weight."""
    feats, bank, pos, neg = random_case(b=6, k=4, m=9, seed=3, device=device)
    mask = torch.tensor(
        [[1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 1, 0], [1, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 1]]
    ).bool()
    kw = dict(temperature=0.1, lambda_t=0.5, alpha=1.75)
    got = selective_contrastive_loss(feats, bank, pos, neg, pos_mask=mask.to(device), **kw)
    want = naive_masked_loss(*(x.cpu() for x in (feats, bank, pos, neg)), mask, **kw)
    assert torch.allclose(got.cpu(), want, atol=1e-10)


def test_all_true_mask_is_the_unmasked_loss():
    feats, bank, pos, neg = random_case(k=3, m=9, seed=5)
    kw = dict(temperature=0.1, lambda_t=0.5, alpha=1.75)
    full = torch.ones_like(pos, dtype=torch.bool)
    assert torch.allclose(
        selective_contrastive_loss(feats, bank, pos, neg, pos_mask=full, **kw),
        selective_contrastive_loss(feats, bank, pos, neg, **kw),
        atol=1e-12,
    )


def test_masked_weights_closed_form():
    from reidlib.methods.losses import masked_positive_weights

    mask = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 0]]).bool()
    c = masked_positive_weights(mask, lambda_t=0.5, alpha=1.75)
    assert c[0].tolist() == pytest.approx([0.5, 1.75 * 0.5 / 2, 0.0, 1.75 * 0.5 / 2])
    assert c[1].tolist() == [0.5, 0.0, 0.0, 0.0]


def test_masked_gradcheck():
    feats, bank, pos, neg = random_case(b=3, n=20, d=6, k=3, m=5)
    mask = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 0], [1, 1, 1, 1]]).bool()
    feats.requires_grad_(True)
    fn = lambda x: selective_contrastive_loss(  # noqa: E731
        x, bank, pos, neg, temperature=0.5, lambda_t=0.4, alpha=1.5, pos_mask=mask
    )
    assert torch.autograd.gradcheck(fn, (feats,))


def test_mask_must_keep_the_own_slot():
    feats, bank, pos, neg = random_case(k=2, m=4)
    mask = torch.ones_like(pos, dtype=torch.bool)
    mask[0, 0] = False
    with pytest.raises(ValueError, match="own slot"):
        selective_contrastive_loss(feats, bank, pos, neg, temperature=0.1, lambda_t=0.5, alpha=1.0, pos_mask=mask)
