"""The layout of a model's one flat parameter buffer, :attr:`MLP.flat <xpnet.MLP.flat>`.

The weights ``W1 ... WL`` come first, then the biases ``b1 ... bL``, then each normalized
hidden layer's scale and shift (``gamma1, beta1, ...``), so that weight decay covers one
leading block of :attr:`Layout.n_weights` elements (biases, scales and shifts are not decayed). Anything laid out the same
way (a gradient, an optimizer's moments) has the same per-layer views. :class:`ParamList`
is the list of views that :attr:`MLP.params <xpnet.MLP.params>` returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


class Layout:
    """Where each parameter of a network with layer widths ``sizes`` lives in its flat buffer.

    ``normed``: the indices ``l`` (0-based) of the layers whose output is normalized (hidden
    layers only), each with a scale ``gamma`` and a shift ``beta`` of its width.

    Attributes:
        names: per parameter, in the order of ``MLP.params``: ``W1, b1`` (then ``gamma1, beta1`` if
            layer 1 is normalized), ``W2, b2``, ...
        slices: per parameter, in that order, its ``(start, stop, shape)``; ``W`` is
            ``(n_{l-1}, n_l)``, ``b``, ``gamma`` and ``beta`` ``(n_l,)``.
        order: the parameters' indices in the order they lie in the buffer (``W1..WL, b1..bL``,
            then ``gamma, beta`` per normalized layer).
        n_weights: where the biases begin (how many weights there are).
    """

    def __init__(self, sizes: Sequence[int], normed: Sequence[int] = ()):
        self.names: list[str] = []
        shapes: list[tuple] = []
        self._index: dict[tuple[str, int], int] = {}  # (kind, l) -> params index
        for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            kinds = (("W", (n_in, n_out)), ("b", (n_out,))) + ((("gamma", (n_out,)), ("beta", (n_out,))) if l in normed else ())
            for kind, shape in kinds:
                self._index[kind, l] = len(shapes)
                self.names.append(f"{kind}{l + 1}")
                shapes.append(shape)
        n = len(sizes) - 1
        self.order = ([self._index["W", l] for l in range(n)] + [self._index["b", l] for l in range(n)]
                      + [i for l in sorted(normed) for i in (self._index["gamma", l], self._index["beta", l])])
        self.slices: list = [None] * len(shapes)  # params index -> (start, stop, shape)
        start = 0
        for i in self.order:
            stop = start + math.prod(shapes[i])
            self.slices[i] = (start, stop, shapes[i])
            start = stop
        self.n_weights = self.slices[1][0]  # where the biases begin
        self.size = start  # elements in all

    def index(self, kind: str, l: int) -> int:
        """The position in ``MLP.params`` of layer ``l``'s (0-based) ``"W"``, ``"b"``, ``"gamma"`` or ``"beta"``."""
        return self._index[kind, l]

    def __len__(self) -> int:
        return len(self.slices)

    def views(self, xp, flat) -> list:
        """Per-layer views ``[W1, b1, W2, b2, ...]`` of ``flat``, any array in this layout."""
        return [xp.reshape(flat[start:stop], shape) for start, stop, shape in self.slices]

    def pack(self, backend, arrays: Sequence, dtype) -> Any:
        """Arrays ``[W1, b1, ...]`` (host or device) as one new array of ``backend`` in this layout."""
        xp = backend.xp
        return xp.concat([xp.reshape(backend.asarray(arrays[i], dtype), (-1,)) for i in self.order])

    def check(self, i: int, value) -> None:
        """ValueError unless ``value`` has the shape of parameter ``i`` (``W1`` is 0, ``b1`` 1, ...)."""
        shape = self.slices[i][2]
        if tuple(value.shape) != shape:
            raise ValueError(f"params[{i}] ({self.names[i]}) has shape {tuple(value.shape)}: expected {shape}")


class ParamList(list):
    """:attr:`MLP.params <xpnet.MLP.params>`: per-layer views into the model's flat buffer.

    Assigning an item (``model.params[0] = W``) or a slice copies the values into the
    buffer (checked against ``layout``, as ``backend`` arrays of ``dtype``), so nothing can
    detach a layer from it; the layout is fixed, so the list cannot grow or shrink.
    """

    def __init__(self, layout: Layout, views: list, backend, dtype):
        super().__init__(views)
        self._layout, self._backend, self._dtype = layout, backend, dtype

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            targets, values = range(len(self))[index], list(value)
            if len(values) != len(targets):
                raise ValueError(f"model.params[{index.start}:{index.stop}] takes {len(targets)} arrays, "
                                 f"got {len(values)}: the layout is fixed")
            for i, v in zip(targets, values):
                self._write(i, v)
        else:
            self._write(range(len(self))[index], value)

    def _write(self, i: int, value) -> None:
        """Copy ``value`` into view ``i``, after checking its shape, with the buffer's device current."""
        self._layout.check(i, value)
        with self._backend.activate():
            self[i][...] = self._backend.asarray(value, self._dtype)

    def _fixed(self, *args, **kwargs):
        raise TypeError("model.params has a fixed layout (views into model.flat): assign its items instead")

    append = extend = insert = pop = remove = clear = sort = reverse = __delitem__ = __iadd__ = __imul__ = _fixed
