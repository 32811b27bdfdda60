import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minissd import autograd as ag
from minissd import nn
from minissd.autograd import Tensor, gradcheck
from minissd.optim import SGD


def small_net(rng, dtype=np.float32):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, rng=rng, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 2, 4, rng=rng, dtype=dtype))


def test_named_parameters_are_dotted_and_ordered():
    net = small_net(np.random.default_rng(0))
    names = [n for n, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "3.weight", "3.bias"]


def test_same_seed_same_model_different_layers_differ():
    a, b = small_net(np.random.default_rng(1)), small_net(np.random.default_rng(1))
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    rng = np.random.default_rng(0)  # one generator threaded through: layers differ
    c1, c2 = nn.Conv2d(2, 2, 3, rng=rng), nn.Conv2d(2, 2, 3, rng=rng)
    assert not np.array_equal(c1.weight.data, c2.weight.data)


def test_state_dict_roundtrip_through_npz(tmp_path):
    a, b = small_net(np.random.default_rng(1)), small_net(np.random.default_rng(2))
    path = nn.save_weights(a, tmp_path / "w" / "net.npz")
    assert list(tmp_path.joinpath("w").iterdir()) == [path]  # no temporary left behind
    nn.load_weights(b, path)
    x = Tensor(np.random.default_rng(3).standard_normal((2, 1, 8, 8)).astype(np.float32))
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_load_state_dict_names_the_bad_key():
    net = small_net(np.random.default_rng(0))
    state = net.state_dict()
    state["0.weight"] = np.zeros((5, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(5, 1, 3, 3\)"):
        net.load_state_dict(state)
    del state["0.weight"]
    with pytest.raises(ValueError, match="1 missing keys \\('0.weight'\\)"):
        net.load_state_dict(state)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled objects"):
        nn.load_npz(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        nn.load_npz(tmp_path / "junk.npz")


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    path = nn.save_npz(tmp_path / "w.npz", {"a": np.ones(3)})

    class Boom:
        def __array__(self, *a, **k):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        nn.save_npz(path, {"a": Boom()})
    np.testing.assert_array_equal(nn.load_npz(path)["a"], np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]


@given(c=st.integers(1, 4), h=st.integers(1, 3), scale=st.floats(0.5, 30), seed=st.integers(0, 99))
def test_l2norm_layer_gradcheck(c, h, scale, seed):
    layer = nn.L2Norm(c, scale=scale, dtype=np.float64)
    layer.weight.data = layer.weight.data + np.random.default_rng(seed).standard_normal(c)
    x = Tensor(np.random.default_rng(seed + 1).standard_normal((2, c, h, h)), requires_grad=True)
    assert gradcheck(lambda x, w: layer(x), x, layer.weight)
    out = nn.L2Norm(c, scale=scale, dtype=np.float64)(x).data
    big = (x.data ** 2).sum(axis=1) > 1e-4
    np.testing.assert_allclose(np.sqrt((out ** 2).sum(axis=1))[big], scale, rtol=1e-5)


def test_train_eval_flags_reach_children():
    net = small_net(np.random.default_rng(0)).eval()
    assert not any(m.training for _, m in net.named_modules())
    net.train()
    assert all(m.training for _, m in net.named_modules())


# ------------------------------------------------------------------ learning

def test_tiny_conv_net_learns_a_toy_task():
    """Is the bright square in the left or the right half? A two-layer conv net learns it."""
    rng = np.random.default_rng(0)
    n, size = 64, 8
    images = rng.normal(0, 0.1, (n, 1, size, size)).astype(np.float32)
    labels = rng.integers(0, 2, n)
    for i, side in enumerate(labels):
        x0 = rng.integers(0, 2) + (4 if side else 0)
        y0 = rng.integers(0, size - 2)
        images[i, 0, y0:y0 + 2, x0:x0 + 2] += 1.0
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 2, 4, rng=rng))
    opt = SGD(net.named_parameters(), lr=0.1, momentum=0.9)

    def loss_fn():
        logits = net(Tensor(images)).reshape(n, 2)
        return ag.cross_entropy(logits, labels).mean(), logits

    first, _ = loss_fn()
    for _ in range(60):
        opt.zero_grad()
        loss, _ = loss_fn()
        loss.backward()
        opt.step()
    last, logits = loss_fn()
    assert last.item() < 0.2 * first.item()
    assert (logits.data.argmax(1) == labels).mean() == 1.0


@given(n=st.integers(2, 3), c=st.integers(1, 3), h=st.integers(1, 3), seed=st.integers(0, 99))
def test_batch_norm_gradcheck(n, c, h, seed):
    rng = np.random.default_rng(seed)
    x = Tensor(rng.standard_normal((n, c, h, h)) * 3 + 1, requires_grad=True)
    w = Tensor(rng.standard_normal(c), requires_grad=True)
    b = Tensor(rng.standard_normal(c), requires_grad=True)
    assert gradcheck(lambda x, w, b: ag.functional.batch_norm(x, w, b)[0], x, w, b)


def test_batch_norm_layer_matches_torch_in_train_and_eval():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for BatchNorm2d")
    rng = np.random.default_rng(0)
    ours, theirs = nn.BatchNorm2d(3, dtype=np.float64), torch.nn.BatchNorm2d(3).double()
    for _ in range(3):
        x = rng.standard_normal((4, 3, 5, 5)) * 2 + 0.5
        y = ours(Tensor(x)).data
        np.testing.assert_allclose(y, theirs(torch.tensor(x)).detach().numpy(), atol=1e-10)
    state = ours.state_dict()
    np.testing.assert_allclose(state["running_mean"], theirs.running_mean.numpy(), atol=1e-12)
    np.testing.assert_allclose(state["running_var"], theirs.running_var.numpy(), atol=1e-12)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 3, 4, 4))
    np.testing.assert_allclose(ours(Tensor(x)).data, theirs(torch.tensor(x)).detach().numpy(),
                               atol=1e-10)
    fresh = nn.BatchNorm2d(3, dtype=np.float64)
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.state_dict()["running_var"], state["running_var"])


# ------------------------------------------------------------------ initialisers


def test_layers_without_a_generator_draw_from_the_seeded_default():
    init = nn.init
    init.seed(5)
    a1, a2 = nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(3, 64, 3, padding=1)
    init.seed(5)
    b1 = nn.Conv2d(3, 64, 3, padding=1)
    assert init.default_generator() is not None
    np.testing.assert_array_equal(a1.weight.data, b1.weight.data)  # same seed, same weights
    assert not np.array_equal(a1.weight.data, a2.weight.data)  # but layers differ
    explicit = nn.Conv2d(3, 64, 3, padding=1, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a1.weight.data, explicit.weight.data)
    init.seed()
    np.testing.assert_array_equal(nn.Conv2d(1, 2, 3).weight.data,
                                  nn.Conv2d(1, 2, 3, rng=np.random.default_rng(0)).weight.data)
    assert init.DEFAULT_SEED == 0


@pytest.mark.parametrize("name, options", [("xavier_uniform", {}), ("kaiming_normal", {}),
                                           ("zeros", {}), ("constant", {"value": 2.5})])
def test_initialisers_share_one_signature(name, options):
    import inspect

    fn = getattr(nn.init, name)
    params = list(inspect.signature(fn).parameters.values())
    assert [p.name for p in params[:2]] == ["shape", "rng"] and params[1].default is None
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:])
    assert inspect.signature(fn).parameters["dtype"].default is np.float32
    shape = (4, 3, 2, 2)
    for rng in (None, np.random.default_rng(0)):
        for out in (fn(shape, rng, dtype=np.float64, **options), fn(shape, rng=rng, **options)):
            assert out.shape == shape and out.dtype in (np.float64, np.float32)
    assert fn(shape, **options).dtype == np.float32
    if name == "constant":
        assert (fn(shape, value=2.5) == 2.5).all()
