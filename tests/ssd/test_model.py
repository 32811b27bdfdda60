import numpy as np
import pytest

from minissd import priors
from minissd.autograd import Tensor, no_grad
from minissd.ssd.model import SSD, ssd300, ssd512, ssd_small


def forward_shapes(config, batch=1):
    model = SSD(config)
    size = config.image_size
    x = Tensor(np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32))
    taps = {}
    with no_grad():
        loc, conf = model(x, taps=taps)
    return model, loc, conf, taps


def test_ssd300_heads_line_up_with_8732_priors():
    model, loc, conf, taps = forward_shapes(ssd300())
    assert loc.shape == (1, 8732, 4) and conf.shape == (1, 8732, 21)
    assert model.priors().shape == (8732, 4)
    # the paper's source maps
    assert taps["conv4_3"].shape == (1, 512, 38, 38)
    assert taps["pool3"].shape[2:] == (38, 38)  # ceil rounding: 75 -> 38
    assert taps["fc7"].shape == (1, 1024, 19, 19)
    assert [taps[f"conv{i}_2"].shape[1:] for i in range(8, 12)] == [
        (512, 10, 10), (256, 5, 5), (256, 3, 3), (256, 1, 1)]
    assert model.base.fc6.dilation == 6 and model.base.fc6.padding == 6
    np.testing.assert_array_equal(model.l2norm.weight.data, 20.0)


def test_ssd512_heads_line_up_with_24564_priors():
    model, loc, conf, taps = forward_shapes(ssd512())
    assert loc.shape == (1, 24564, 4) and conf.shape == (1, 24564, 21)
    assert taps["conv12_2"].shape == (1, 256, 1, 1)
    assert model.extras.conv12_2.weight.shape[2:] == (4, 4)


def test_small_model_matches_its_priors_preset():
    model, loc, conf, _ = forward_shapes(ssd_small(num_classes=4), batch=2)
    assert loc.shape == (2, len(priors.make_priors(priors.SMALL)), 4)
    assert conf.shape[2] == 4


def test_wrong_input_size_names_the_maps():
    model = SSD(ssd_small(num_classes=3))
    with pytest.raises(ValueError, match=r"SSD-small: input \(1, 3, 96, 96\) gives source maps"):
        with no_grad():
            model(Tensor(np.zeros((1, 3, 96, 96), np.float32)))


def test_priors_and_network_disagreeing_is_an_error():
    bad = ssd_small(num_classes=3, extras=ssd_small(3).extras[:2])
    with pytest.raises(ValueError, match="source maps but the priors config has 6"):
        SSD(bad)


def test_same_seed_same_weights():
    a, b = SSD(ssd_small(3), seed=7), SSD(ssd_small(3), seed=7)
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)
