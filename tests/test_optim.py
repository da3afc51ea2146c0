"""LARS against the torchlars formula computed by hand; the warm-up + cosine schedule."""
import copy
import math

import pytest
import torch

from common.errors import UserError
from training.optim import LARS, LRSchedule, build_optimizer, lr_at, set_lr

torch.set_num_threads(1)


def lars_reference(weights, grads_per_step, lr, momentum, wd, trust, eps):
    """Plain loop over steps and tensors, float64, from the LARS definition."""
    w = [t.double().clone() for t in weights]
    bufs = [None] * len(w)
    for grads in grads_per_step:
        for j, g in enumerate(grads):
            if g is None:
                continue
            g = g.double()
            w_norm, g_norm = w[j].norm().item(), g.norm().item()
            local = trust * w_norm / (g_norm + wd * w_norm + eps) if w_norm > 0 and g_norm > 0 else 1.0
            d = local * (g + wd * w[j])
            bufs[j] = d.clone() if bufs[j] is None else momentum * bufs[j] + d
            w[j] = w[j] - lr * bufs[j]
    return w


def make_case(seed):
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(4, 3, generator=gen), torch.zeros(5), torch.randn(7, generator=gen) * 0.01, torch.randn(2)]
    steps = []
    for step in range(3):
        grads = [torch.randn(t.shape, generator=gen) for t in weights]
        grads[3] = torch.zeros(2) if step == 0 else grads[3]  # zero-norm gradient, then a real one
        steps.append(grads)
    return weights, steps


@pytest.mark.parametrize("n_steps", [1, 2, 3])
@pytest.mark.parametrize("wd", [1e-6, 1e-2])
def test_lars_matches_reference(n_steps, wd):
    weights, steps = make_case(seed=n_steps)
    lr, momentum, trust, eps = 0.7, 0.9, 1e-3, 1e-8
    params = [torch.nn.Parameter(t.clone()) for t in weights]
    opt = LARS(params, lr=lr, momentum=momentum, weight_decay=wd, trust_coef=trust, eps=eps)
    for grads in steps[:n_steps]:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    expected = lars_reference(weights, steps[:n_steps], lr, momentum, wd, trust, eps)
    for p, e in zip(params, expected):
        assert torch.allclose(p.detach().double(), e, rtol=1e-5, atol=1e-7)


def test_lars_zero_weight_uses_plain_gradient():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([1.0, -2.0, 0.5])
    LARS([p], lr=0.1).step()
    assert torch.allclose(p.detach(), -0.1 * torch.tensor([1.0, -2.0, 0.5]))


def test_lars_skips_params_without_grad():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    a.grad = torch.ones(2)
    opt = LARS([a, b], lr=1.0)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(2)) and not torch.equal(a.detach(), torch.ones(2))
    assert b not in opt.state


def test_lars_state_dict_round_trip():
    weights, steps = make_case(seed=9)
    params = [torch.nn.Parameter(t.clone()) for t in weights]
    opt = LARS(params, lr=0.5)
    for p, g in zip(params, steps[0]):
        p.grad = g.clone()
    opt.step()
    clone_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    clone = LARS(clone_params, lr=0.5)
    clone.load_state_dict(copy.deepcopy(opt.state_dict()))  # as after torch.save/torch.load
    for group in (params, clone_params):
        for p, g in zip(group, steps[1]):
            p.grad = g.clone()
    opt.step(), clone.step()
    for p, q in zip(params, clone_params):
        assert torch.equal(p, q)


def test_build_optimizer_registry():
    params = [torch.nn.Parameter(torch.ones(2))]
    assert isinstance(build_optimizer(params, "lars", lr=0.1), LARS)
    sgd = build_optimizer(params, "sgd", lr=0.1, weight_decay=1e-4)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    with pytest.raises(UserError, match="lars, sgd"):
        build_optimizer(params, "adam", lr=0.1)


def test_warmup_endpoints():
    spe = 50
    assert lr_at(0, spe, 0.1, 10, 100) == pytest.approx(0.1)
    assert lr_at(5 * spe, spe, 0.1, 10, 100) == pytest.approx(0.55)
    assert lr_at(10 * spe, spe, 0.1, 10, 100) == pytest.approx(1.0)
    warm = [lr_at(s, spe, 0.1, 10, 100) for s in range(10 * spe + 1)]
    assert all(b > a for a, b in zip(warm, warm[1:]))


def test_cosine_decays_to_zero():
    spe, epochs, warmup = 20, 30, 10
    lrs = [lr_at(s, spe, 0.1, warmup, epochs) for s in range(warmup * spe, epochs * spe + 1)]
    assert lrs[0] == pytest.approx(1.0)
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    mid = lr_at((warmup + (epochs - warmup) / 2) * spe, spe, 0.1, warmup, epochs)
    assert mid == pytest.approx(0.5)
    one_step_after = lr_at(warmup * spe + 1, spe, 0.1, warmup, epochs)
    x = 1 / spe
    assert one_step_after == pytest.approx((1 + math.cos(math.pi * x / (epochs - warmup))) / 2)


def test_no_warmup_is_pure_cosine_from_lr_init():
    assert lr_at(0, 10, 0.3, 0, 5) == pytest.approx(0.3)
    assert lr_at(25, 10, 0.3, 0, 5) == pytest.approx(0.15)


def test_schedule_sets_lr_and_validates():
    schedule = LRSchedule(steps_per_epoch=10, lr_init=0.1, warmup_epochs=2, epochs=4)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=123.0)
    assert schedule.apply(opt, 20) == pytest.approx(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0)
    set_lr(opt, 0.25)
    assert opt.param_groups[0]["lr"] == 0.25
    with pytest.raises(UserError, match="--warmup"):
        LRSchedule(steps_per_epoch=10, warmup_epochs=10, epochs=10)
    with pytest.raises(UserError, match="steps per epoch"):
        LRSchedule(steps_per_epoch=0)
