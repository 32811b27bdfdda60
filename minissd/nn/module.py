"""``Module`` and ``Parameter``: named, nested containers of learnable tensors."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..autograd import Tensor
from ..backend import get_array_module, to_device, to_numpy


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimiser updates (``requires_grad`` is on)."""

    def __init__(self, data):
        super().__init__(data, requires_grad=True)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Module:
    """Base class of layers and models.

    Assigning a ``Parameter`` or a ``Module`` to an attribute registers it by that name, so that
    ``named_parameters`` yields dotted names such as ``"base.conv1_1.weight"`` — the keys of
    ``state_dict``. Subclasses implement ``forward``; calling the module calls it.
    """

    def __init__(self):
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_params" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call Module.__init__() before assigning "
                               f"attribute {name!r}")
        self._params.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._params[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------ traversal
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix=""):
        for mod_name, m in self.named_modules(prefix):
            for name, p in m._params.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def register_buffer(self, name, array):
        """A state array that is saved and moved with the module but not learned (e.g. the
        running statistics of batch normalisation)."""
        self._buffers[name] = array

    def named_buffers(self, prefix=""):
        for mod_name, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                yield (f"{mod_name}.{name}" if mod_name else name), m, name, b

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def children(self):
        return list(self._modules.values())

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True):
        for _, m in self.named_modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    # ---------------------------------------------------------------- devices
    def to(self, device: str):
        """Move every parameter to ``'cpu'`` (NumPy) or ``'gpu'`` (CuPy), in place."""
        for p in self.parameters():
            p.data = to_device(p.data, device)
            if p.grad is not None:
                p.grad = to_device(p.grad, device)
        for _, m, name, b in self.named_buffers():
            m._buffers[name] = to_device(b, device)
        return self

    def astype(self, dtype):
        """Cast every parameter to ``dtype`` (float32 or float64), in place."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        for _, m, name, b in self.named_buffers():
            m._buffers[name] = b.astype(dtype)
        return self

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, np.ndarray]:
        """Name -> NumPy array copy of every parameter and buffer."""
        state = OrderedDict((name, to_numpy(p.data).copy()) for name, p in self.named_parameters())
        state.update((name, to_numpy(b).copy()) for name, _, _, b in self.named_buffers())
        return state

    def load_state_dict(self, state, strict: bool = True):
        """Copy arrays into the parameters and buffers, keeping each one's device and dtype.

        Raises ``ValueError`` counting the missing/unexpected keys and naming the first few
        (when ``strict``), or naming the key and both shapes on a shape mismatch.
        """
        own = dict(self.named_parameters())
        buffers = {name: (m, key, b) for name, m, key, b in self.named_buffers()}
        missing = sorted((set(own) | set(buffers)) - set(state))
        unexpected = sorted(set(state) - set(own) - set(buffers))
        if strict and (missing or unexpected):
            raise ValueError("load_state_dict: the state does not fit this model: "
                             + "; ".join(f"{len(keys)} {what} keys ({_first(keys)})"
                                         for what, keys in (("missing", missing),
                                                            ("unexpected", unexpected)) if keys)
                             + " (weights of another architecture or number of classes?)")
        for name, value in state.items():
            if name not in own and name not in buffers:
                continue
            current = own[name].data if name in own else buffers[name][2]
            value = to_numpy(value)
            if tuple(value.shape) != tuple(current.shape):
                raise ValueError(f"load_state_dict: {name!r} has shape {tuple(value.shape)} in "
                                 f"the state but {tuple(current.shape)} in the model")
            copied = get_array_module(current).asarray(value, dtype=current.dtype).copy()
            if name in own:
                own[name].data = copied
            else:
                m, key, _ = buffers[name]
                m._buffers[key] = copied
        return self

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        for name, m in self._modules.items():
            lines.append("  " + f"({name}): {m!r}".replace("\n", "\n  "))
        return "\n".join(lines) + ")" if len(lines) > 1 else f"{type(self).__name__}()"


def _first(keys, listed=3):
    return ", ".join(map(repr, keys[:listed])) + (", ..." if len(keys) > listed else "")


class Sequential(Module):
    """Modules applied in order; registered as ``"0"``, ``"1"``, ... (or the given names)."""

    def __init__(self, *modules, **named):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)
        for name, m in named.items():
            setattr(self, name, m)

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x
