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
from concurrent.futures import ThreadPoolExecutor

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
# together, small enough to stay in a core's L2 cache (1 MB on the AMD EPYC
# it was tuned on: 1 MB chunks took 0.55-0.7x the time of 16 MB ones with int64 keys at
# 32 and 256 channels, benchmarks/NOTES.md).
_CHUNK_BYTES = 1 << 20


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


Op = tuple[Callable[..., Tensor], Tensor, Tensor, Tensor]


def _stages(t: Tensor, spare: Tensor, k: int, descending: bool) -> tuple[list[Op], Tensor]:
    """The network that sorts the columns of ``t`` (C, P), C a power of two: its ops, each
    ``fn(a, b, out=out)`` on views of ``t`` and ``spare``, and the view holding the first
    k rows once they have run.

    The two buffers are ping-ponged and both overwritten. Below the top level, blocks
    alternate direction (the standard bitonic sort); the top-level merge drops the half
    that cannot reach the top k. Built once per buffer shape and replayed for every
    chunk, so a chunk costs the ops alone, not building their views.
    """
    c, p = t.shape
    first, second = (torch.maximum, torch.minimum) if descending else (torch.minimum, torch.maximum)
    ops: list[Op] = []
    src, dst = t, spare
    block = 2
    while block < c:
        dist = block // 2
        while dist >= 1:
            # (pairs of blocks, direction, groups, 2 x dist rows compared, pixels)
            shape = (c // (2 * block), 2, block // (2 * dist), 2, dist, p)
            s = src.view(shape)
            winner, loser = _crossed(dst.view(shape))
            ops += [(first, s[:, :, :, 0], s[:, :, :, 1], winner),
                    (second, s[:, :, :, 0], s[:, :, :, 1], loser)]  # fmt: skip
            src, dst = dst, src
            dist //= 2
        block *= 2
    live, dist = c, c // 2
    while dist >= 1:
        s = src[:live].view(live // (2 * dist), 2, dist, p)
        if k <= dist:  # only the winning half of the single live block is needed
            ops.append((first, s[0, 0], s[0, 1], dst[:dist]))
            live = dist
        else:
            o = dst[:live].view(live // (2 * dist), 2, dist, p)
            ops += [(first, s[:, 0], s[:, 1], o[:, 0]), (second, s[:, 0], s[:, 1], o[:, 1])]
        src, dst = dst, src
        dist //= 2
    return ops, src[:k]


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


Fill = Callable[[Tensor, Tensor, dict[str, Tensor]], None]
Emit = Callable[[Tensor, slice, slice], None]


def _select(
    planes: Tensor, k: int, descending: bool, dtype: torch.dtype, fill: Fill, emit: Emit
) -> None:
    """Top k of every pixel of ``planes`` (C, N, H*W), one cache-sized chunk at a time.

    ``fill(chunk, buffer, scratch)`` writes a chunk's (C, n, p) planes into a ``dtype``
    buffer of that shape (``scratch``: a dict the caller may keep temporaries in, one per
    thread); ``emit(top, images, pixels)`` receives the chunk's first k rows (k, n, p).

    On a CPU with several torch threads, chunks are shared out among as many Python
    threads, each running torch single-threaded on its own buffers (torch releases the
    GIL inside an op). Letting each small op split across OpenMP threads instead made a
    call wait at every op's barrier for a descheduled thread: on a busy machine 10-20x
    slower than one thread (benchmarks/NOTES.md).
    """
    c, n, hw = planes.shape
    if c & (c - 1):
        raise ValueError(f"the bitonic network needs a power-of-two channel count, got {c}")
    itemsize = torch.empty((), dtype=dtype).element_size()
    step = max(1, _CHUNK_BYTES // (2 * c * itemsize))
    chunks = list(_chunks(n, hw, step))
    threads = min(torch.get_num_threads(), len(chunks)) if planes.device.type == "cpu" else 1

    def work(first: int) -> None:
        if threads > 1:
            torch.set_num_threads(1)  # this thread's OpenMP setting only
        buffer = torch.empty((c, min(step, n * hw)), dtype=dtype, device=planes.device)
        spare = torch.empty_like(buffer)
        plans: dict[int, tuple[list[Op], Tensor]] = {}
        scratch: dict[str, Tensor] = {}
        for images, pixels in chunks[first::threads]:
            chunk = planes[:, images, pixels]
            size = chunk.shape[1] * chunk.shape[2]
            if size not in plans:  # every chunk but the last has the first one's size
                plans[size] = _stages(buffer[:, :size], spare[:, :size], k, descending)
            ops, top = plans[size]
            fill(chunk, buffer[:, :size].view(chunk.shape), scratch)
            for fn, a, b, out in ops:
                fn(a, b, out=out)
            emit(top.view(k, *chunk.shape[1:]), images, pixels)

    if threads == 1:
        work(0)
        return
    with ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(work, first) for first in range(threads)]:
            done.result()


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
    _select(planes, k, largest, x.dtype, lambda chunk, buf, _: buf.copy_(chunk), emit)
    return out


def _topk_index(x: Tensor, k: int, largest: bool) -> Tensor:
    """Channels (int64, (N, k, H, W)) of the k largest (smallest) values at each pixel,
    in output order: by value, equal values by channel.

    The network sorts integer keys that hold each value's order-preserving bits above
    its channel. Keys are built per chunk in a few passes: ``+ 0.0`` turns -0.0 into
    +0.0 (they tie, as in the reference), the float bits of negative values get their
    magnitude bits flipped (a monotone map to int), and one add widens them, shifted
    by the channel bits (negated for largest), and adds the channel.
    """
    n, c, h, w = x.shape
    int_dtype, key_dtype = KEY_DTYPES[x.dtype]
    width = torch.iinfo(int_dtype).bits
    magnitude = torch.iinfo(int_dtype).max
    channel = torch.arange(c, dtype=key_dtype, device=x.device).view(c, 1, 1)
    scale = -(1 << width) if largest else 1 << width

    def fill(chunk: Tensor, keys: Tensor, scratch: dict[str, Tensor]) -> None:
        if "bits" not in scratch or scratch["bits"].shape != chunk.shape:
            scratch["bits"] = torch.empty(chunk.shape, dtype=int_dtype, device=x.device)
            scratch["sign"] = torch.empty_like(scratch["bits"])
        bits, sign = scratch["bits"], scratch["sign"]
        torch.add(chunk, 0.0, out=bits.view(x.dtype))
        torch.bitwise_right_shift(bits, width - 1, out=sign)
        sign &= magnitude
        bits ^= sign
        torch.add(channel, bits, alpha=scale, out=keys)

    index = torch.empty((n, k, h, w), dtype=torch.int64, device=x.device)
    rows = index.view(n, k, h * w)
    low = (1 << width) - 1

    def emit(top: Tensor, images: slice, pixels: slice) -> None:
        rows[images, :, pixels] = (top & low).transpose(0, 1)

    planes = x.detach().transpose(0, 1).flatten(2)
    _select(planes, k, False, key_dtype, fill, emit)
    return index


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
    index = _topk_index(x, k, largest)
    return _SelectChannels.apply(x, x.detach().gather(1, index), index)
