"""Every checker of chapters 01-05 fails on planted wrong answers and passes on the worked solution.

A planted wrong answer is a plausible mistake (a sign error, an off-by-one size, an IoU without
the clamp, a wrong prior order ...). For each, the checker must return False and print one
``NOT YET`` line with a pointer, without raising. The worked solutions in ``chapters/solutions``
must make every checker return True and print ``PASS``.
"""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from minissd.autograd import Tensor
from minissd.exercises import ch01_autograd as ch01
from minissd.exercises import ch02_conv_pool as ch02
from minissd.exercises import ch03_receptive_field as ch03
from minissd.exercises import ch04_priors as ch04
from minissd.exercises import ch05_matching as ch05

SOLUTIONS = Path(__file__).resolve().parents[1] / "chapters" / "solutions"


def solution(stem):
    spec = importlib.util.spec_from_file_location(f"solution_{stem}", SOLUTIONS / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


S1, S2, S3 = solution("01_autograd"), solution("02_conv_pool"), solution("03_vgg_extras")
S4, S5 = solution("04_priors"), solution("05_matching_encoding")


def verdict_of(capsys, checker, answer):
    """Run a checker; return (result, printed text), asserting it printed exactly one verdict."""
    result = checker(answer)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(("PASS", "NOT YET"))]
    assert len(lines) == 1, out
    assert isinstance(result, bool)
    return result, out


def assert_passes(capsys, checker, answer):
    ok, out = verdict_of(capsys, checker, answer)
    assert ok is True and out.startswith("PASS: "), out


def assert_fails(capsys, checker, answer, *pointer):
    ok, out = verdict_of(capsys, checker, answer)
    assert ok is False and out.startswith("NOT YET: ") and " -- " in out, out
    for words in pointer:
        assert words in out, out
    return out


def not_implemented(*args, **kwargs):
    raise NotImplementedError("fill me in")


# ---------------------------------------------------------------------------- chapter 01


def _sigmoid_data(x):
    return 1 / (1 + np.exp(-x.data))


def sigmoid_sign_error(x):
    y = _sigmoid_data(x)
    return Tensor.from_op(y, (x,), lambda g: (-g * y * (1 - y),), "sigmoid")


def sigmoid_forgets_g(x):
    y = _sigmoid_data(x)
    return Tensor.from_op(y, (x,), lambda g: (y * (1 - y) + 0 * g,), "sigmoid")


def sigmoid_wrong_forward(x):
    y = 1 / (1 + np.exp(x.data))
    return Tensor.from_op(y, (x,), lambda g: (-g * y * (1 - y),), "sigmoid")


def sigmoid_composed(x):  # right numbers, but autograd wrote the backward
    return 1 / (1 + (-x).exp())


def sigmoid_returns_array(x):
    return _sigmoid_data(x)


def test_ch01_sigmoid_solution_passes(capsys):
    assert_passes(capsys, ch01.check_sigmoid, S1.sigmoid)


@pytest.mark.parametrize("wrong, pointer", [
    (sigmoid_sign_error, ["on input shape", "analytic", "numeric"]),
    (sigmoid_forgets_g, ["on input shape", "analytic", "numeric"]),
    (sigmoid_wrong_forward, ["forward at x ="]),
    (sigmoid_composed, ["Tensor.from_op"]),
    (sigmoid_returns_array, ["must return a Tensor"]),
    (not_implemented, ["NotImplementedError"]),
])
def test_ch01_sigmoid_wrong_answers_fail(capsys, wrong, pointer):
    assert_fails(capsys, ch01.check_sigmoid, wrong, *pointer)


def test_ch01_sigmoid_pointer_names_the_smallest_shape(capsys):
    out = assert_fails(capsys, ch01.check_sigmoid, sigmoid_sign_error)
    assert "on input shape (1,)" in out  # hypothesis shrank the failing shape


def bias_mean_not_sum(x, b):
    y = x.data + b.data[None, :, None, None]
    return Tensor.from_op(y, (x, b), lambda g: (g, g.mean(axis=(0, 2, 3))), "bias")


def bias_first_image_only(x, b):
    y = x.data + b.data[None, :, None, None]
    return Tensor.from_op(y, (x, b), lambda g: (g, g[0].sum(axis=(1, 2))), "bias")


def bias_wrong_axes(x, b):  # a (N,) gradient for a (C,) bias: a shape error in backward
    y = x.data + b.data[None, :, None, None]
    return Tensor.from_op(y, (x, b), lambda g: (g, g.sum(axis=(1, 2, 3))), "bias")


def bias_on_wrong_axis(x, b):
    y = x.data + b.data[None, None, None, :].mean()
    return Tensor.from_op(y, (x, b), lambda g: (g, g.sum(axis=(0, 2, 3))), "bias")


def test_ch01_add_channel_bias_solution_passes(capsys):
    assert_passes(capsys, ch01.check_add_channel_bias, S1.add_channel_bias)


@pytest.mark.parametrize("wrong, pointer", [
    (bias_mean_not_sum, ["input 1"]),
    (bias_first_image_only, ["input 1"]),
    (bias_wrong_axes, ["raised"]),
    (bias_on_wrong_axis, ["forward at index"]),
    (not_implemented, ["NotImplementedError"]),
])
def test_ch01_add_channel_bias_wrong_answers_fail(capsys, wrong, pointer):
    assert_fails(capsys, ch01.check_add_channel_bias, wrong, *pointer)


# ---------------------------------------------------------------------------- chapter 02


def size_ignores_dilation(size, kernel, stride=1, padding=0, dilation=1, ceil_mode=False):
    return S2.output_size(size, kernel, stride, padding, 1, ceil_mode)


def size_always_floor(size, kernel, stride=1, padding=0, dilation=1, ceil_mode=False):
    return S2.output_size(size, kernel, stride, padding, dilation, False)


def size_plain_ceil(size, kernel, stride=1, padding=0, dilation=1, ceil_mode=False):
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    return (math.ceil(span / stride) if ceil_mode else span // stride) + 1  # no last-window rule


def size_off_by_one(size, kernel, stride=1, padding=0, dilation=1, ceil_mode=False):
    return (size + 2 * padding - dilation * (kernel - 1)) // stride + 1


def size_returns_float(size, kernel, stride=1, padding=0, dilation=1, ceil_mode=False):
    return float(S2.output_size(size, kernel, stride, padding, dilation, ceil_mode))


def test_ch02_output_size_solution_passes(capsys):
    assert_passes(capsys, ch02.check_output_size, S2.output_size)


@pytest.mark.parametrize("wrong, pointer", [
    (size_ignores_dilation, ["fc6", "conv2d gives 19"]),
    (size_always_floor, ["pool3", "max_pool2d gives 38"]),
    (size_plain_ceil, ["ceil_mode=True", "must still start inside"]),
    (size_off_by_one, ["SSD300's"]),
    (size_returns_float, ["return an int"]),
    (not_implemented, ["NotImplementedError"]),
])
def test_ch02_output_size_wrong_answers_fail(capsys, wrong, pointer):
    assert_fails(capsys, ch02.check_output_size, wrong, *pointer)


def im2col_ignores_dilation(x, kernel, stride=1, padding=0, dilation=1):
    return S2.im2col(x, kernel, stride, padding, 1)


def im2col_uv_swapped(x, kernel, stride=1, padding=0, dilation=1):
    cols = S2.im2col(x, kernel, stride, padding, dilation)
    c, k = x.shape[0], kernel
    return cols.reshape(c, k, k, -1).transpose(0, 2, 1, 3).reshape(c * k * k, -1)


def im2col_no_padding(x, kernel, stride=1, padding=0, dilation=1):
    c, h, w = x.shape
    xpad = np.zeros((c, h + 2 * padding, w + 2 * padding))
    xpad[:, :h, :w] = x  # pads on one side only
    return S2.im2col(xpad, kernel, stride, 0, dilation)


def im2col_columns_transposed(x, kernel, stride=1, padding=0, dilation=1):
    cols = S2.im2col(x, kernel, stride, padding, dilation)
    ho = (x.shape[1] + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    return cols.reshape(cols.shape[0], ho, -1).transpose(0, 2, 1).reshape(cols.shape[0], -1)


def test_ch02_im2col_solution_passes(capsys):
    assert_passes(capsys, ch02.check_im2col, S2.im2col)


@pytest.mark.parametrize("wrong, pointer", [
    (im2col_ignores_dilation, ["dilation="]),
    (im2col_uv_swapped, ["row 1 = (c=0, u=0, v=1)"]),
    (im2col_no_padding, ["padding=1"]),
    (im2col_columns_transposed, ["column"]),
    (not_implemented, ["NotImplementedError"]),
])
def test_ch02_im2col_wrong_answers_fail(capsys, wrong, pointer):
    assert_fails(capsys, ch02.check_im2col, wrong, *pointer)


# ---------------------------------------------------------------------------- chapter 03


def rf_jump_after(layers):
    rf, jump = 1, 1
    for k, s, d in layers:
        jump *= s
        rf += (k - 1) * d * jump  # uses the jump AFTER the layer
    return rf, jump


def rf_ignores_dilation(layers):
    return S3.receptive_field([(k, s, 1) for k, s, _ in layers])


def rf_adds_strides(layers):
    rf, jump = 1, 1
    for k, s, d in layers:
        rf += (k - 1) * d * jump
        jump += s - 1
    return rf, jump


def rf_off_by_one(layers):
    rf, jump = S3.receptive_field(layers)
    return rf + (1 if len(layers) > 3 else 0), jump


def test_ch03_brute_force_agrees_with_known_values():
    for _, layers, expected in ch03.KNOWN:
        assert ch03.brute_force_receptive_field(layers) == expected


def test_ch03_receptive_field_solution_passes(capsys):
    assert_passes(capsys, ch03.check_receptive_field, S3.receptive_field)


@pytest.mark.parametrize("wrong, pointer", [
    (rf_jump_after, ["(rf, jump) = (6, 2)"]),
    (rf_ignores_dilation, ["fc6"]),
    (rf_adds_strides, ["product of the strides"]),
    (rf_off_by_one, ["VGG16 up to conv4_3"]),
    (not_implemented, ["NotImplementedError"]),
])
def test_ch03_receptive_field_wrong_answers_fail(capsys, wrong, pointer):
    assert_fails(capsys, ch03.check_receptive_field, wrong, *pointer)


def test_ch03_brute_force_catches_what_known_values_miss(capsys):
    def right_on_known_stacks(layers):  # wrong only for kernels of 4
        rf, jump = S3.receptive_field(layers)
        return rf + sum(k == 4 for k, _, _ in layers), jump

    assert_fails(capsys, ch03.check_receptive_field, right_on_known_stacks, "brute force")


# ---------------------------------------------------------------------------- chapter 04


def _per_cell(aspect_ratios):
    return 2 + 2 * len(aspect_ratios)


def priors_columns_outer(f, image_size, step, min_size, max_size, aspect_ratios):
    p = S4.map_priors(f, image_size, step, min_size, max_size, aspect_ratios)
    b = _per_cell(aspect_ratios)
    return p.reshape(f, f, b, 4).transpose(1, 0, 2, 3).reshape(-1, 4)


def priors_ratio_turned(f, image_size, step, min_size, max_size, aspect_ratios):
    p = S4.map_priors(f, image_size, step, min_size, max_size, aspect_ratios)
    p = p.reshape(f * f, -1, 4).copy()
    p[:, 2:, 2:] = p[:, 2:, 2:][..., ::-1]  # (1/r, r) instead of (r, 1/r)
    return p.reshape(-1, 4)


def priors_squares_last(f, image_size, step, min_size, max_size, aspect_ratios):
    p = S4.map_priors(f, image_size, step, min_size, max_size, aspect_ratios)
    p = p.reshape(f * f, -1, 4)
    return np.concatenate([p[:, 2:], p[:, :2]], axis=1).reshape(-1, 4)


def priors_centre_at_corner(f, image_size, step, min_size, max_size, aspect_ratios):
    p = S4.map_priors(f, image_size, step, min_size, max_size, aspect_ratios).copy()
    p[:, :2] -= 0.5 * step / image_size
    return p


def priors_no_sqrt_square(f, image_size, step, min_size, max_size, aspect_ratios):
    return S4.map_priors(f, image_size, step, min_size, min_size, aspect_ratios)


def priors_pixels(f, image_size, step, min_size, max_size, aspect_ratios):
    return S4.map_priors(f, image_size, step, min_size, max_size, aspect_ratios) * image_size


def priors_step_from_f(f, image_size, step, min_size, max_size, aspect_ratios):
    return S4.map_priors(f, image_size, image_size / f, min_size, max_size, aspect_ratios)


def test_ch04_map_priors_solution_passes(capsys):
    assert_passes(capsys, ch04.check_map_priors, S4.map_priors)


@pytest.mark.parametrize("wrong, pointer", [
    (priors_columns_outer, ["another order", "cell (i=0, j=1)"]),
    (priors_ratio_turned, ["another order", "box 2"]),
    (priors_squares_last, ["another order", "box 0"]),
    (priors_centre_at_corner, ["row 0 = cell (i=0, j=0)"]),
    (priors_no_sqrt_square, ["box 1 (the sqrt(min_size * max_size) square)"]),
    (priors_pixels, ["expected (cx, cy, w, h)"]),
    (priors_step_from_f, ["SSD300 map 0"]),  # 300 / 38 is not SSD300's step of 8 pixels
    (not_implemented, ["NotImplementedError"]),
])
def test_ch04_map_priors_wrong_answers_fail(capsys, wrong, pointer):
    assert_fails(capsys, ch04.check_map_priors, wrong, *pointer)


# ---------------------------------------------------------------------------- chapter 05


def _corners(a, b):
    a = np.asarray(a, dtype=np.float64)[:, None, :]
    b = np.asarray(b, dtype=np.float64)[None, :, :]
    return a, b


def iou_without_clamp(a, b):
    a, b = _corners(a, b)
    inter = ((np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]))
             * (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])))
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    with np.errstate(all="ignore"):
        return inter / (area_a + area_b - inter)


def iou_zero_over_zero(a, b):
    a, b = _corners(a, b)
    inter = (np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
             * np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0))
    area_a = np.maximum(a[..., 2] - a[..., 0], 0) * np.maximum(a[..., 3] - a[..., 1], 0)
    area_b = np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)
    with np.errstate(all="ignore"):
        return inter / (area_a + area_b - inter)


def iou_clamps_the_product(a, b):  # max(w*h, 0): two negative sides make a positive area
    a, b = _corners(a, b)
    inter = np.maximum((np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]))
                       * (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])), 0)
    area_a = np.maximum(a[..., 2] - a[..., 0], 0) * np.maximum(a[..., 3] - a[..., 1], 0)
    area_b = np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def iou_plus_one_pixel(a, b):  # the VOC devkit's +1 convention, wrong for continuous boxes
    a = np.asarray(a, dtype=np.float64).copy()
    b = np.asarray(b, dtype=np.float64).copy()
    a[:, 2:] += 1
    b[:, 2:] += 1
    return S5.iou(a, b)


def iou_transposed(a, b):
    return S5.iou(b, a).T if len(a) == len(b) else S5.iou(b, a)


def iou_loops_break_on_empty(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.array([[S5.iou(x[None], y[None])[0, 0] for y in b] for x in a])


def test_ch05_iou_solution_passes(capsys):
    assert_passes(capsys, ch05.check_iou, S5.iou)


@pytest.mark.parametrize("wrong, pointer", [
    (iou_without_clamp, ["disjoint boxes", "clamp"]),
    (iou_zero_over_zero, ["union is 0", "is nan"]),
    (iou_clamps_the_product, ["disjoint boxes", "clamp"]),
    (iou_plus_one_pixel, ["partial overlap"]),
    (iou_transposed, ["(N, M)"]),
    (iou_loops_break_on_empty, ["empty"]),
    (not_implemented, ["NotImplementedError"]),
])
def test_ch05_iou_wrong_answers_fail(capsys, wrong, pointer):
    assert_fails(capsys, ch05.check_iou, wrong, *pointer)


def test_ch05_iou_property_search_finds_a_subtle_bug(capsys):
    def iou_wrong_at_x2_equal_5(a, b):  # right on every named edge case
        out = S5.iou(a, b)
        a_, _ = _corners(a, b)
        return np.where((a_[..., 2] == 5) & (out > 0) & (out < 1), out * 0.9, out)

    out = assert_fails(capsys, ch05.check_iou, iou_wrong_at_x2_equal_5, "a = [[")
    assert "5.0" in out


def encode_no_variances(matched, priors, variances):
    return S5.encode(matched, priors, (1.0, 1.0, 1.0, 1.0))


def encode_variances_mixed(matched, priors, variances):
    v = tuple(variances)
    return S5.encode(matched, priors, (v[0], v[0], v[2], v[2]))


def encode_no_log(matched, priors, variances):
    t = S5.encode(matched, priors, variances)
    t[:, 2:] = np.exp(t[:, 2:] * np.asarray(variances[2:])) / np.asarray(variances[2:])
    return t


def encode_by_gt_size(matched, priors, variances):
    g_size = matched[:, 2:] - matched[:, :2]
    g_centre = (matched[:, :2] + matched[:, 2:]) / 2
    v = np.asarray(variances)
    return np.concatenate([(g_centre - priors[:, :2]) / (v[:2] * g_size),
                           np.log(g_size / priors[:, 2:]) / v[2:]], axis=1)


def encode_corners_as_centre(matched, priors, variances):
    return S5.encode(np.concatenate([matched[:, :2] - matched[:, 2:] / 2,
                                     matched[:, :2] + matched[:, 2:] / 2], axis=1),
                     priors, variances)


def encode_times_variance(matched, priors, variances):
    v = np.asarray(variances) ** 2
    return S5.encode(matched, priors, tuple(v))


def test_ch05_encode_solution_passes(capsys):
    assert_passes(capsys, ch05.check_encode, S5.encode)


@pytest.mark.parametrize("wrong, pointer", [
    (encode_no_variances, ["t_cx"]),
    (encode_variances_mixed, ["component 1", "t_cy"]),
    (encode_no_log, ["t_w"]),
    (encode_by_gt_size, ["component 0"]),
    (encode_corners_as_centre, ["prior 0"]),
    (encode_times_variance, ["t_cx"]),
    (not_implemented, ["NotImplementedError"]),
])
def test_ch05_encode_wrong_answers_fail(capsys, wrong, pointer):
    assert_fails(capsys, ch05.check_encode, wrong, *pointer)
