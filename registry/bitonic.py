"""Top-k across channels with a bitonic sorting network made of plain tensor ops.

``torch.topk`` and ``torch.sort`` over the channel axis sort every pixel's C values
one pixel at a time in scalar code. At the paper's shapes (32 to 512 channels,
thousands to millions of pixels) the network is faster: each of its
log2(C) * (log2(C) + 1) / 2 stages is one elementwise max and one min over whole
channel planes, vectorised across all pixels at once. The maps are laid out as
(C, pixels) so every stage works on long contiguous rows, pixels are processed in
chunks that stay in cache, and the last merge only keeps the rows that can reach
the top k.

Ties follow a stable sort: among equal values the lower channel comes first. With
gradients the network sorts integer keys that pack each value's order-preserving
bits above its channel index, so the winners' channels are known exactly; the
backward scatters each output's gradient to its channel. Without gradients it sorts
the values themselves, which is cheaper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

__all__ = ["KEY_DTYPES", "topk", "topk_values"]

# Float dtype -> (same-width integer view, key dtype twice as wide)
KEY_DTYPES = {
    torch.float32: (torch.int32, torch.int64),
    torch.float16: (torch.int16, torch.int32),
    torch.bfloat16: (torch.int16, torch.int32),
}

# A chunk of pixels is packed, sorted and unpacked in two buffers of this many bytes
# together, small enough to stay in the caches and to be reused by the allocator.
_CHUNK_BYTES = 16 << 20


def _crossed(o: Tensor) -> tuple[Tensor, Tensor]:
    """Views of ``o`` (X, direction, Y, position, dist, P) where the winner and the loser
    of each comparison go: position = direction for the winner, 1 - direction for the
    loser, so blocks of both directions are written by one op each."""
    sx, sd, sy, sp, sdist, spx = o.stride()
    size = (o.shape[0], 2, o.shape[2], o.shape[4], o.shape[5])
    offset = o.storage_offset()
    winner = o.as_strided(size, (sx, sd + sp, sy, sdist, spx), offset)
    loser = o.as_strided(size, (sx, sd - sp, sy, sdist, spx), offset + sp)
    return winner, loser


def _network(t: Tensor, spare: Tensor, k: int, descending: bool) -> Tensor:
    """Sort the columns of ``t`` (C, P), C a power of two, and return their first k rows.

    Overwrites ``t`` and ``spare`` (same shape, the other ping-pong buffer). Below the
    top level, blocks alternate direction (the standard bitonic sort); the top-level
    merge drops the half that cannot reach the top k.
    """
    c, p = t.shape
    first, second = (torch.maximum, torch.minimum) if descending else (torch.minimum, torch.maximum)
    src, dst = t, spare
    block = 2
    while block < c:
        dist = block // 2
        while dist >= 1:
            # (pairs of blocks, direction, groups, 2 x dist rows compared, pixels)
            shape = (c // (2 * block), 2, block // (2 * dist), 2, dist, p)
            s = src.view(shape)
            winner, loser = _crossed(dst.view(shape))
            first(s[:, :, :, 0], s[:, :, :, 1], out=winner)
            second(s[:, :, :, 0], s[:, :, :, 1], out=loser)
            src, dst = dst, src
            dist //= 2
        block *= 2
    live, dist = c, c // 2
    while dist >= 1:
        s = src[:live].view(live // (2 * dist), 2, dist, p)
        if k <= dist:  # only the winning half of the single live block is needed
            first(s[0, 0], s[0, 1], out=dst[:dist])
            live = dist
        else:
            o = dst[:live].view(live // (2 * dist), 2, dist, p)
            first(s[:, 0], s[:, 1], out=o[:, 0])
            second(s[:, 0], s[:, 1], out=o[:, 1])
        src, dst = dst, src
        dist //= 2
    return src[:k]


def _chunks(n: int, hw: int, step: int) -> Iterator[tuple[slice, slice]]:
    """(images, pixels) slices covering n images of hw pixels, at most ``step`` pixels each."""
    if hw >= step:
        for image in range(n):
            for start in range(0, hw, step):
                yield slice(image, image + 1), slice(start, start + step)
    else:
        per = step // hw
        for image in range(0, n, per):
            yield slice(image, image + per), slice(0, hw)


Fill = Callable[[Tensor, Tensor], None]
Emit = Callable[[Tensor, slice, slice], None]


def _select(
    planes: Tensor, k: int, descending: bool, dtype: torch.dtype, fill: Fill, emit: Emit
) -> None:
    """Top k of every pixel of ``planes`` (C, N, H*W), one cache-sized chunk at a time.

    ``fill(chunk, buffer)`` writes a chunk's (C, n, p) planes into a ``dtype`` buffer of
    that shape; ``emit(top, images, pixels)`` receives the chunk's first k rows (k, n, p).
    """
    c, n, hw = planes.shape
    if c & (c - 1):
        raise ValueError(f"the bitonic network needs a power-of-two channel count, got {c}")
    itemsize = torch.empty((), dtype=dtype).element_size()
    step = max(1, _CHUNK_BYTES // (2 * c * itemsize))
    buffer = torch.empty((c, min(step, n * hw)), dtype=dtype, device=planes.device)
    spare = torch.empty_like(buffer)
    for images, pixels in _chunks(n, hw, step):
        chunk = planes[:, images, pixels]
        size = chunk.shape[1] * chunk.shape[2]
        sorted_ = buffer[:, :size]
        fill(chunk, sorted_.view(chunk.shape))
        top = _network(sorted_, spare[:, :size], k, descending)
        emit(top.view(k, *chunk.shape[1:]), images, pixels)


def topk_values(x: Tensor, k: int, largest: bool) -> Tensor:
    """The k largest (smallest) values across channels of ``x`` (N, C, H, W), sorted.

    No gradient flows (the network's max/min would split it between ties); use
    :func:`topk` when one is needed. NaN is not supported.
    """
    n, _, h, w = x.shape
    out = torch.empty((n, k, h, w), dtype=x.dtype, device=x.device)
    rows = out.view(n, k, h * w)

    def emit(top: Tensor, images: slice, pixels: slice) -> None:
        rows[images, :, pixels] = top.transpose(0, 1)

    planes = x.detach().transpose(0, 1).flatten(2)
    _select(planes, k, largest, x.dtype, lambda chunk, buf: buf.copy_(chunk), emit)
    return out


def _topk_and_index(x: Tensor, k: int, largest: bool) -> tuple[Tensor, Tensor]:
    """Values and channels (int64) of the k largest (smallest) values at each pixel.

    The network sorts integer keys; each chunk's values are then gathered from the
    chunk of ``x`` it just read, so they are the input's exact values.
    """
    n, c, h, w = x.shape
    int_dtype, key_dtype = KEY_DTYPES[x.dtype]
    width = torch.iinfo(int_dtype).bits
    magnitude = torch.iinfo(int_dtype).max
    channel = torch.arange(c, dtype=key_dtype, device=x.device).view(c, 1, 1)

    def fill(chunk: Tensor, keys: Tensor) -> None:
        # Order-preserving integers from the float bits (sign-extended by the copy):
        # negative floats get their magnitude bits flipped and move up by one, which
        # keeps their order and makes -0.0 equal +0.0.
        keys.copy_(chunk)
        sign = keys >> (width - 1)
        keys ^= sign & magnitude
        keys -= sign
        # Ascending keys: the order (negated for largest) in the high half, the channel
        # in the low half, so equal values sort by channel.
        keys *= -(1 << width) if largest else 1 << width
        keys += channel

    values = torch.empty((n, k, h, w), dtype=x.dtype, device=x.device)
    index = torch.empty((n, k, h, w), dtype=torch.int64, device=x.device)
    floats = x.detach().transpose(0, 1).flatten(2)

    def emit(top: Tensor, images: slice, pixels: slice) -> None:
        chunk_index = top & ((1 << width) - 1)
        index.view(n, k, h * w)[images, :, pixels] = chunk_index.transpose(0, 1)
        picked = floats[:, images, pixels].gather(0, chunk_index)
        values.view(n, k, h * w)[images, :, pixels] = picked.transpose(0, 1)

    planes = x.detach().view(int_dtype).transpose(0, 1).flatten(2)
    _select(planes, k, False, key_dtype, fill, emit)
    return values, index


class _SelectChannels(torch.autograd.Function):
    """Values picked from ``x`` at known channels; the gradient goes back to exactly those."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, x: Tensor, values: Tensor, index: Tensor
    ) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(index)
        ctx.x_shape = x.shape
        return values

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (index,) = ctx.saved_tensors
        return grad.new_zeros(ctx.x_shape).scatter_(1, index, grad), None, None


def topk(x: Tensor, k: int, largest: bool) -> Tensor:
    """The k largest (smallest) values across channels of ``x``, sorted, with autograd.

    Equal values are ordered by channel, as a stable sort orders them, and each
    output's gradient goes to the input it came from. Supports the dtypes in
    :data:`KEY_DTYPES`; NaN is not supported.
    """
    values, index = _topk_and_index(x, k, largest)
    return _SelectChannels.apply(x, values, index)
