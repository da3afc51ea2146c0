"""NT-Xent and shift losses against slow loops written from the definitions."""
import math

import pytest
import torch

from training.losses import (
    ContrastiveShiftLoss,
    LossTerms,
    NTXentLoss,
    contrastive_mask,
    positive_index,
    shift_loss,
)

torch.set_num_threads(1)


def excluded_ref(r: int, c: int, N: int, n_branches: int, mode: str) -> bool:
    """Written from the text: self always; d_i with a_i / b_i only in shifted_removed with 3 branches."""
    if r == c:
        return True
    if mode != "shifted_removed" or n_branches != 3:
        return False
    (br, ir), (bc, ic) = divmod(r, N), divmod(c, N)
    return ir == ic and 2 in (br, bc) and br != bc


def ntxent_ref(z: torch.Tensor, n_branches: int, tau: float, mode: str) -> float:
    """Double loop over anchors and candidates, float64."""
    z = z.double()
    rows = z.shape[0]
    N = rows // n_branches
    zn = [z[r] / (z[r].norm() + 1e-8) for r in range(rows)]
    total = 0.0
    for a in range(2 * N):
        pos = a + N if a < N else a - N
        denom = sum(
            math.exp(float(zn[a] @ zn[c]) / tau) for c in range(rows) if not excluded_ref(a, c, N, n_branches, mode)
        )
        total += -math.log(math.exp(float(zn[a] @ zn[pos]) / tau) / denom)
    return total / (n_branches * N)


@pytest.mark.parametrize("n_branches", [2, 3])
@pytest.mark.parametrize("mode", ["shifted_removed", "naive"])
@pytest.mark.parametrize("N,d", [(1, 3), (4, 8), (8, 5)])
def test_ntxent_matches_reference(n_branches, mode, N, d):
    gen = torch.Generator().manual_seed(N * 100 + d + n_branches)
    for tau in (0.5, 0.2):
        z = torch.randn(n_branches * N, d, generator=gen) * 3
        got = NTXentLoss(tau, mode)(z, n_branches)
        assert got.item() == pytest.approx(ntxent_ref(z, n_branches, tau, mode), rel=1e-5, abs=1e-6)


def test_ntxent_modes_differ_only_with_dissolved_branch():
    z = torch.randn(3 * 6, 4, generator=torch.Generator().manual_seed(1))
    assert NTXentLoss(0.5, "shifted_removed")(z, 3) != NTXentLoss(0.5, "naive")(z, 3)
    z2 = z[:12]
    assert NTXentLoss(0.5, "shifted_removed")(z2, 2) == NTXentLoss(0.5, "naive")(z2, 2)


@pytest.mark.parametrize("n_branches", [2, 3])
@pytest.mark.parametrize("mode", ["shifted_removed", "naive"])
def test_mask_matches_reference(n_branches, mode):
    N = 5
    mask = contrastive_mask(N, n_branches, mode)
    rows = n_branches * N
    assert mask.shape == (rows, rows) and mask.dtype == torch.bool
    expected = torch.tensor([[excluded_ref(r, c, N, n_branches, mode) for c in range(rows)] for r in range(rows)])
    assert torch.equal(mask, expected)


def test_mask_specific_indices():
    N = 4
    removed = contrastive_mask(N, 3, "shifted_removed")
    naive = contrastive_mask(N, 3, "naive")
    a1, b1, d1, d2 = 1, N + 1, 2 * N + 1, 2 * N + 2
    assert removed[a1, a1] and naive[a1, a1]
    assert removed[a1, d1] and removed[b1, d1] and removed[d1, a1] and removed[d1, b1]
    assert not naive[a1, d1] and not naive[b1, d1]
    assert not removed[a1, d2] and not removed[a1, b1]  # other dissolved rows and the positive stay
    assert removed.sum() == 3 * N + 4 * N and naive.sum() == 3 * N


def test_positive_is_other_view():
    idx = positive_index(3)
    assert idx.tolist() == [3, 4, 5, 0, 1, 2]


def test_positive_pair_lowers_loss():
    """Making b_i equal to a_i (the positive) must lower the loss."""
    gen = torch.Generator().manual_seed(3)
    a, b, d = (torch.randn(6, 16, generator=gen) for _ in range(3))
    loss = NTXentLoss(0.5, "shifted_removed")
    assert loss(torch.cat([a, a.clone(), d]), 3) < loss(torch.cat([a, b, d]), 3)


def test_dissolved_copy_ignored_only_in_shifted_removed():
    """With N = 1 the only dissolved row is d_0, the anchors' own copy: excluded or not by mode."""
    gen = torch.Generator().manual_seed(4)
    a, b, d1, d2 = (torch.randn(1, 8, generator=gen) for _ in range(4))
    removed, naive = NTXentLoss(0.5, "shifted_removed"), NTXentLoss(0.5, "naive")
    assert removed(torch.cat([a, b, d1]), 3) == removed(torch.cat([a, b, d2]), 3)
    assert naive(torch.cat([a, b, d1]), 3) != naive(torch.cat([a, b, d2]), 3)


def test_fp32_under_autocast():
    z = torch.randn(2 * 8, 16, generator=torch.Generator().manual_seed(5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = NTXentLoss()(z.bfloat16(), 2)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ntxent_ref(z.bfloat16().float(), 2, 0.5, "naive"), rel=1e-5)


def test_shift_loss_matches_reference():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 4, generator=gen)
    labels = torch.randint(0, 4, (12,), generator=gen)
    ref = sum(-(logits[m, labels[m]] - torch.logsumexp(logits[m], 0)) for m in range(12)) / 12
    assert shift_loss(logits, labels).item() == pytest.approx(ref.item(), rel=1e-6)


def test_contrastive_shift_loss_sums_terms():
    gen = torch.Generator().manual_seed(2)
    z, logits = torch.randn(3 * 8, 5, generator=gen), torch.randn(3 * 8, 4, generator=gen)
    labels = torch.arange(4).repeat_interleave(2).repeat(3)
    terms = ContrastiveShiftLoss(0.5, "naive", n_branches=3)(z, logits, labels)
    assert isinstance(terms, LossTerms)
    assert terms.contrastive.item() == pytest.approx(ntxent_ref(z, 3, 0.5, "naive"), rel=1e-5)
    assert torch.allclose(terms.total, terms.contrastive + terms.shift)
    assert set(terms.to_dict()) == {"loss", "loss_contrastive", "loss_shift"}


def test_gradient_flows():
    z = torch.randn(2 * 4, 6, requires_grad=True)
    NTXentLoss()(z, 2).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_non_finite_raises():
    z = torch.randn(3 * 4, 5)
    z[0, 0] = float("nan")
    with pytest.raises(FloatingPointError):
        ContrastiveShiftLoss(n_branches=3)(z, torch.randn(12, 4), torch.zeros(12, dtype=torch.long))
    logits = torch.randn(12, 4)
    logits[3, 1] = float("inf")
    with pytest.raises(FloatingPointError):
        ContrastiveShiftLoss(n_branches=3)(torch.randn(12, 5), logits, torch.zeros(12, dtype=torch.long))


def test_bad_arguments():
    from common.errors import UserError

    with pytest.raises(UserError, match="--loss_mode"):
        NTXentLoss(0.5, "bogus")
    with pytest.raises(UserError, match="--temperature"):
        NTXentLoss(0.0)
    with pytest.raises(ValueError):
        NTXentLoss()(torch.randn(7, 3), 2)
