"""Shared hypothesis strategies for the convolution tests (tests/autograd, tests/kernels)."""

from hypothesis import strategies as st


@st.composite
def conv_geometry(draw):
    """``(kernel, stride, padding, dilation, (h, w))`` of a 2-D convolution, each an (h, w) pair
    from 1..3 (padding 0..3), with an input that holds at least one dilated kernel (up to 6
    rows or columns more)."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    size = []
    for k, d, p in zip(kernel, dilation, padding):
        smallest = max(1, d * (k - 1) + 1 - 2 * p)
        size.append(draw(st.integers(smallest, smallest + 6)))
    return kernel, stride, padding, dilation, tuple(size)


#: SSD's convolution shapes at test size: (name, C, O, H = W, kernel, padding, dilation, stride).
SSD_CONVS = [
    ("fc6: 3x3 dilation 6 padding 6 on 19x19", 5, 7, 19, 3, 6, 6, 1),
    ("fc7: 1x1 on 19x19", 6, 5, 19, 1, 0, 1, 1),
    ("VGG 3x3 padding 1", 4, 6, 38, 3, 1, 1, 1),
    ("VGG 3x3 padding 1, wide enough for Winograd", 96, 80, 19, 3, 1, 1, 1),
    ("extras conv8_2: 3x3 stride 2 padding 1, 19 -> 10", 6, 5, 19, 3, 1, 1, 2),
    ("extras conv10_2: 3x3 no padding, 3 -> 1", 6, 5, 3, 3, 0, 1, 1),
]
