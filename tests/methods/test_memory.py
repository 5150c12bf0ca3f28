"""Memory banks: the update rule against a loop, duplicates, and read-before-write in a step."""

import torch
import torch.nn.functional as F

from reidlib.methods.memory import MemoryBank, build_banks


def test_update_matches_formula(device):
    bank = MemoryBank(6, (4,), momentum=0.5).to(device)
    init = F.normalize(torch.randn(6, 4), dim=1)
    bank.fill(init.to(device))
    new = torch.randn(2, 4)
    bank.update(torch.tensor([1, 4], device=device), new.to(device))
    features = bank.features.cpu()
    for row, slot in enumerate([1, 4]):
        want = F.normalize(0.5 * init[slot] + 0.5 * new[row], dim=0)
        assert torch.allclose(features[slot], want, atol=1e-6)
    untouched = [0, 2, 3, 5]
    assert torch.allclose(features[untouched], init[untouched], atol=1e-7)


def test_part_bank_normalises_each_stripe():
    bank = MemoryBank(3, (4, 5), momentum=0.2)
    bank.update(torch.tensor([2]), torch.randn(1, 4, 5) * 7)
    assert torch.allclose(bank.features[2].norm(dim=-1), torch.ones(4), atol=1e-6)


def test_zero_initialised_mixture_takes_first_feature():
    bank = MemoryBank(5, (3,), momentum=0.5)
    x = F.normalize(torch.randn(1, 3), dim=1)
    bank.update(torch.tensor([[2, 0]]), x)  # the anchor's own slot and one positive
    assert torch.allclose(bank.features[2], x[0], atol=1e-6)
    assert torch.allclose(bank.features[0], x[0], atol=1e-6)


def test_repeated_slots_take_the_mean(device):
    bank = MemoryBank(4, (3,), momentum=0.5).to(device)
    init = F.normalize(torch.randn(4, 3), dim=1)
    bank.fill(init.to(device))
    a, b = torch.randn(3), torch.randn(3)
    bank.update(torch.tensor([[1, 3], [1, 2]], device=device), torch.stack([a, b]).to(device))
    features = bank.features.cpu()
    want1 = F.normalize(0.5 * init[1] + 0.5 * (a + b) / 2, dim=0)
    assert torch.allclose(features[1], want1, atol=1e-6)
    assert torch.allclose(features[3], F.normalize(0.5 * init[3] + 0.5 * a, dim=0), atol=1e-6)


def test_float16_storage(device):
    bank = MemoryBank(4, (8,), dtype=torch.float16).to(device)
    bank.update(torch.tensor([0], device=device), torch.randn(1, 8, device=device))
    assert bank.features.dtype == torch.float16 and bank.features.device.type == device.type
    assert abs(bank.features[0].float().norm().item() - 1) < 1e-2


def test_read_before_write_within_a_step():
    # The loss reads the bank; the update after backward must not change what was read.
    g_bank, _, mix = build_banks(8, 4, 2, momentum=0.5)
    mix.fill(F.normalize(torch.randn(8, 4), dim=1))
    x = F.normalize(torch.randn(2, 4), dim=1).requires_grad_(True)
    idx = torch.tensor([[0, 1, 2], [3, 4, 5]])
    read = mix.features[idx].clone()
    logits = torch.einsum("bd,bjd->bj", x, mix.features[idx])
    logits.logsumexp(1).sum().backward()
    grad_before = x.grad.clone()
    mix.update(idx[:, :2], x.detach())
    assert torch.equal(grad_before, x.grad)  # gradient came from the values read before the write
    assert not torch.equal(mix.features[idx], read)  # ... and the write happened afterwards
    assert len(g_bank) == 8
