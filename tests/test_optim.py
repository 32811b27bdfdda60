"""The optimisers and the learning-rate schedule: ``minissd/optim.py``."""

import numpy as np
import pytest

from minissd import nn
from minissd.optim import SGD, Adam, MultiStepLR


def test_sgd_matches_the_momentum_formula():
    p = nn.Parameter(np.array([1.0, -2.0], np.float64))
    opt = SGD([("w", p)], lr=0.1, momentum=0.9, weight_decay=0.01)
    v = np.zeros(2)
    w = p.data.copy()
    for step in range(3):
        p.grad = np.array([0.5, 0.25]) * (step + 1)
        opt.step()
        v = 0.9 * v + (p.grad + 0.01 * w)
        w = w - 0.1 * v
        np.testing.assert_allclose(p.data, w, rtol=1e-12)


def test_sgd_can_exempt_biases_from_decay():
    w, b = nn.Parameter(np.ones((2, 2))), nn.Parameter(np.ones(2))
    opt = SGD([("conv.weight", w), ("conv.bias", b)], lr=1.0, weight_decay=0.5,
              decay_biases=False)
    w.grad, b.grad = np.zeros((2, 2)), np.zeros(2)
    opt.step()
    np.testing.assert_allclose(w.data, 0.5)
    np.testing.assert_allclose(b.data, 1.0)


def test_sgd_state_roundtrip():
    p = nn.Parameter(np.ones(3))
    opt = SGD([("w", p)], lr=0.1, momentum=0.9)
    p.grad = np.ones(3)
    opt.step()
    opt2 = SGD([("w", p)], lr=0.5, momentum=0.9)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.lr == 0.1
    np.testing.assert_array_equal(opt2.velocity[0], opt.velocity[0])


def test_multistep_schedule_with_warmup():
    sched = MultiStepLR(1e-3, milestones=(80_000, 100_000), gamma=0.1, warmup_iters=100,
                        warmup_factor=0.1)
    assert sched(0) == pytest.approx(1e-4)
    assert sched(50) == pytest.approx(1e-3 * (0.1 * 0.5 + 0.5))
    assert sched(100) == pytest.approx(1e-3)
    assert sched(79_999) == pytest.approx(1e-3)
    assert sched(80_000) == pytest.approx(1e-4)
    assert sched(100_000) == pytest.approx(1e-5)


def test_adam_matches_torch():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for Adam")
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 4))
    p = nn.Parameter(w0.copy())
    opt = Adam([("w", p)], lr=0.01, weight_decay=0.1)
    tp = torch.nn.Parameter(torch.tensor(w0))
    topt = torch.optim.Adam([tp], lr=0.01, weight_decay=0.1)
    for _ in range(5):
        g = rng.standard_normal((3, 4))
        p.grad = g.copy()
        opt.step()
        tp.grad = torch.tensor(g)
        topt.step()
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_adam_state_roundtrip_continues_identically():
    def run(split):
        p = nn.Parameter(np.ones(3))
        opt = Adam([("w", p)], lr=0.1)
        for step in range(4):
            if step == split:
                state = opt.state_dict()
                opt = Adam([("w", p)], lr=0.5)
                opt.load_state_dict(state)
            p.grad = np.array([1.0, -2.0, 0.5]) * (step + 1)
            opt.step()
        return p.data

    np.testing.assert_array_equal(run(split=2), run(split=99))
