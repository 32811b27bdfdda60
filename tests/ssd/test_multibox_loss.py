"""The MultiBox loss equals a deliberately naive per-image, per-prior loop formulation, values
and gradients (float64, 1e-9); zero positives give zero loss and zero gradients."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minissd.autograd import Tensor, gradcheck
from minissd.ssd.model import LossConfig
from minissd.ssd.multibox_loss import hard_negative_mask, multibox_loss


def naive_loss(loc, conf, loc_t, labels, neg_pos_ratio=3, alpha=1.0):
    """Loops only: returns (loss, d loss/d loc, d loss/d conf)."""
    n_img, n_pri, n_cls = conf.shape
    total_pos = sum(1 for i in range(n_img) for p in range(n_pri) if labels[i][p] > 0)
    denom = max(total_pos, 1)
    loss = 0.0
    g_loc = np.zeros_like(loc)
    g_conf = np.zeros_like(conf)
    for i in range(n_img):
        ce, softmax = [], []
        for p in range(n_pri):
            m = max(conf[i][p])
            z = sum(math.exp(v - m) for v in conf[i][p])
            softmax.append([math.exp(v - m) / z for v in conf[i][p]])
            ce.append(m + math.log(z) - conf[i][p][labels[i][p]])
        positives = [p for p in range(n_pri) if labels[i][p] > 0]
        negatives = [p for p in range(n_pri) if labels[i][p] == 0]
        negatives.sort(key=lambda p: (-ce[p], p))  # hardest first, lower index on ties
        chosen = positives + negatives[:min(neg_pos_ratio * len(positives), len(negatives))]
        for p in chosen:
            loss += ce[p] / denom
            for c in range(n_cls):
                onehot = 1.0 if c == labels[i][p] else 0.0
                g_conf[i][p][c] = (softmax[p][c] - onehot) / denom
        for p in positives:
            for k in range(4):
                d = loc[i][p][k] - loc_t[i][p][k]
                loss += alpha * (0.5 * d * d if abs(d) < 1 else abs(d) - 0.5) / denom
                g_loc[i][p][k] = alpha * (d if abs(d) < 1 else math.copysign(1.0, d)) / denom
    return loss, g_loc, g_conf


@st.composite
def batches(draw):
    n_img, n_pri, n_cls = draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(2, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pos_rate = draw(st.sampled_from([0.0, 0.1, 0.3, 0.9]))
    labels = np.where(rng.random((n_img, n_pri)) < pos_rate,
                      rng.integers(1, n_cls, (n_img, n_pri)), 0)
    return (rng.standard_normal((n_img, n_pri, 4)) * 2, rng.standard_normal((n_img, n_pri, n_cls)),
            rng.standard_normal((n_img, n_pri, 4)), labels.astype(np.int64),
            draw(st.sampled_from([1, 3])), draw(st.sampled_from([0.5, 1.0])))


@given(batch=batches())
def test_loss_and_gradients_equal_naive_loops(batch):
    loc, conf, loc_t, labels, ratio, alpha = batch
    lt, ct = Tensor(loc, requires_grad=True), Tensor(conf, requires_grad=True)
    loss, loc_loss, conf_loss = multibox_loss(lt, ct, loc_t, labels,
                                              LossConfig(alpha=alpha, neg_pos_ratio=ratio))
    loss.backward()
    ref, g_loc, g_conf = naive_loss(loc, conf, loc_t, labels, ratio, alpha)
    assert loss.item() == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert loss.item() == pytest.approx(conf_loss.item() + alpha * loc_loss.item(), rel=1e-12)
    np.testing.assert_allclose(lt.grad, g_loc, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ct.grad, g_conf, rtol=1e-9, atol=1e-12)


def test_zero_positives_gives_zero_loss_and_zero_gradients():
    rng = np.random.default_rng(0)
    loc = Tensor(rng.standard_normal((2, 5, 4)), requires_grad=True)
    conf = Tensor(rng.standard_normal((2, 5, 3)), requires_grad=True)
    loss, loc_loss, conf_loss = multibox_loss(loc, conf, np.zeros((2, 5, 4)),
                                              np.zeros((2, 5), np.int64))
    loss.backward()
    assert loss.item() == 0.0 and loc_loss.item() == 0.0 and conf_loss.item() == 0.0
    assert np.all(loc.grad == 0) and np.all(conf.grad == 0)
    assert np.isfinite(loc.grad).all() and np.isfinite(conf.grad).all()


def test_mining_keeps_three_negatives_per_positive_per_image():
    conf_loss = np.array([[0.1, 5.0, 0.2, 4.0, 3.0, 2.0, 1.0, 0.5]] * 2)
    labels = np.array([[1, 0, 0, 0, 0, 0, 0, 0], [0] * 8])
    mask = hard_negative_mask(conf_loss, labels, 3)
    # image 0: the positive and the three hardest negatives (5.0, 4.0, 3.0)
    assert mask[0].tolist() == [True, True, False, True, True, False, False, False]
    # image 1: no positive, no negative (mining is per image)
    assert not mask[1].any()


def test_mining_ties_take_lower_index_first():
    mask = hard_negative_mask(np.array([[1.0, 1.0, 1.0, 1.0, 0.0]]),
                              np.array([[2, 0, 0, 0, 0]]), 2)
    assert mask[0].tolist() == [True, True, True, False, False]


def test_loss_gradcheck_away_from_ties():
    rng = np.random.default_rng(1)
    labels = np.array([[0, 2, 0, 0, 1, 0, 0]])
    loc_t = rng.standard_normal((1, 7, 4))
    loc = Tensor(rng.standard_normal((1, 7, 4)), requires_grad=True)
    conf = Tensor(rng.standard_normal((1, 7, 3)), requires_grad=True)
    assert gradcheck(lambda a, b: multibox_loss(a, b, loc_t, labels)[0], loc, conf)


def test_shape_errors_are_named():
    with pytest.raises(ValueError, match=r"multibox_loss: targets"):
        multibox_loss(Tensor(np.zeros((1, 3, 4))), Tensor(np.zeros((1, 3, 2))),
                      np.zeros((1, 4, 4)), np.zeros((1, 3), np.int64))
