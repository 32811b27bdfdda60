"""Hot-path kernels (installed as ``minissd.kernels``), the fast twins of readable references in
the library, which the tests hold them to:

* ``cpu.py`` (Numba) and ``cuda.py`` with the CUDA C sources ``*.cu`` (compiled by CuPy's
  ``RawKernel`` on first use): IoU and NMS, twins of ``minissd.boxes.iou_reference`` and
  ``nms_reference``;
* ``conv.py`` (im2col in bands, GEMM by kernel offset), ``winograd.py`` (F(2x2, 3x3), and
  F(4x4, 3x3) on large maps) and ``pool.py``: conv2d and max_pool2d on NumPy or CuPy arrays,
  twins of ``minissd.autograd.functional.conv2d_reference`` and ``max_pool2d_reference``;
* ``winograd_tiles.py`` (Numba): Winograd's tile transforms in one pass per tile row, twins of
  the NumPy transforms in ``winograd.py`` (the same bits);
* ``colour.py`` (Numba): the augmentation's saturation and hue step in one pass, twin of
  ``minissd.data.transforms.adjust_saturation_hue_reference`` (the same bits);
* ``batch_threads.py``: the images of a batch across threads in fixed chunks, OpenBLAS held to
  one thread meanwhile (the numbers do not depend on the thread count);
* ``workspace.py``: scratch buffers reused from call to call, for temporaries too big for
  malloc to reuse (each call would page-fault them in afresh).

Nothing here compiles at import.
"""
