"""Worked solutions for chapter 03 (SSD300's layers).

Each function has the name of an exercise in ``chapters/03_vgg_extras.ipynb``; the chapter test
replaces the exercise cell with this source.
"""


def receptive_field(layers):
    """Receptive field and jump of a stack of convolutions / pools.

    layers: list of (kernel, stride, dilation), input first. Returns ``(rf, jump)``: one output
    position of the last layer sees ``rf`` consecutive input pixels, and neighbouring output
    positions are ``jump`` input pixels apart.
    """
    rf, jump = 1, 1
    for kernel, stride, dilation in layers:
        rf += (kernel - 1) * dilation * jump  # the new taps are `jump` input pixels apart
        jump *= stride
    return rf, jump
