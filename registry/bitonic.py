"""Top-k across channels with a bitonic sorting network of plain tensor ops, or compiled.

``torch.topk`` and ``torch.sort`` over the channel axis sort every pixel's C values
one pixel at a time in scalar code. At the paper's shapes (32 to 512 channels,
thousands to millions of pixels) the network is faster: each of its
log2(C) * (log2(C) + 1) / 2 stages is one elementwise max and one min over whole
channel planes, vectorised across all pixels at once. The maps are laid out as
(C, pixels) so every stage works on long contiguous rows, pixels are processed in
chunks that stay in cache, and the last merge only keeps the rows that can reach
the top k.

Ties follow a stable sort: among equal values the lower channel comes first. With
gradients the network sorts 32-bit integer keys that pack each value's
order-preserving bits above its channel index, so the winners' channels are known;
a float32 gives up its lowest log2(C) bits for the channel, and each chunk is then
repaired exactly (see :func:`_repair`). The backward scatters each output's gradient
to its channel. Without gradients the network sorts the values themselves.

For float32 and 16-bit floats on the CPU the same method runs in compiled code where it
was built at install (``registry/_topk_kernel.c``, an optional extension): one pass per
tile of pixels that stays in cache, in place of some 130 tensor ops per chunk, 2-4x
faster than these at the paper's shapes (benchmarks/NOTES.md). Both paths give the reference's
values and gradients bit for bit; the tests run each.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

try:  # the same method in compiled code, built at install time (setup.py)
    from . import _topk_kernel
except ImportError:  # built without a C compiler: the tensor ops below, same results
    _topk_kernel = None

__all__ = ["BITS", "KERNEL", "path", "topk", "topk_values", "uses_kernel"]

# Whether the compiled kernel (registry/_topk_kernel.c) was built: float32 and 16-bit float
# maps on the CPU go to it (see uses_kernel)
KERNEL = _topk_kernel is not None

# Float dtypes the keyed (gradient) path takes -> the same-width integer view of their bits
BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}

# A chunk of pixels is packed, sorted and unpacked in two buffers of this many bytes
# together, small enough to stay in a core's L2 cache with the chunk's other temporaries
# (1 MB on the AMD EPYC it was tuned on: 1 MB chunks took 0.55-0.7x the time of 16 MB
# ones with int64 keys at 32 and 256 channels; 2-4 MB were no faster with int32 keys or
# values, benchmarks/NOTES.md).
_CHUNK_BYTES = 1 << 20
# With each op split across torch's threads instead, larger chunks pay: fewer ops, each
# thread's share larger than its fixed costs (2 threads: 4 MB took 0.80-0.89x the time of
# 1 MB at every paper shape, forward and backward; 2 and 8 MB no better than 4 MB).
_SPLIT_CHUNK_BYTES = 4 << 20
# Below this many chunks a call's ops run on torch's own threads, not on Python threads
# (measured with 2 threads: Python threads won at the denoiser's 100-200 chunks, lost
# at Table 1's and VGG-16's 2-31).
_PYTHON_THREADS_MIN_CHUNKS = 64


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


def _stages(
    t: Tensor, spare: Tensor, k: int, descending: bool, keep_dropped: bool = False
) -> tuple[list[Op], Tensor, list[Tensor]]:
    """The network that sorts the columns of ``t`` (C, P), C a power of two: its ops, each
    ``fn(a, b, out=out)`` on views of ``t`` and ``spare``, the view holding the rows still
    live once they have run (sorted; the first k are the answer) and, with
    ``keep_dropped``, the views where the losers of the dropping merges went (rows of
    either buffer that no later op touches).

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
    live, dist, dropped = c, c // 2, []
    while dist >= 1:
        s = src[:live].view(live // (2 * dist), 2, dist, p)
        if k <= dist:  # only the winning half of the single live block is needed
            ops.append((first, s[0, 0], s[0, 1], dst[:dist]))
            if keep_dropped:
                ops.append((second, s[0, 0], s[0, 1], dst[dist : 2 * dist]))
                dropped.append(dst[dist : 2 * dist])
            live = dist
        else:
            o = dst[:live].view(live // (2 * dist), 2, dist, p)
            ops += [(first, s[:, 0], s[:, 1], o[:, 0]), (second, s[:, 0], s[:, 1], o[:, 1])]
        src, dst = dst, src
        dist //= 2
    return ops, src[:live], dropped


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


# Integer dtypes (and complex128, the one 16-byte dtype) by width in bytes: a row of a
# map this wide moves as one element (see _copy_across)
_WORDS = {2: torch.int16, 4: torch.int32, 8: torch.int64, 16: torch.complex128}


def _copy_across(dst: Tensor, src: Tensor) -> None:
    """``dst.copy_(src)`` for (A, B, W) views whose first two dims are laid out in opposite
    orders (channels first in one, images first in the other) and whose last dim is
    contiguous in both. Where a last-dim row is 2 to 16 bytes (a 2x2 map of float32: 16)
    it moves as one element: torch's copy loops over A x B elements instead of A x B runs
    of W, each run a loop of its own (at VGG-16's 2x2 maps the top k's value copies took
    a quarter of the time, and the whole op 2-6% less, benchmarks/NOTES.md). The bits move
    unchanged: no arithmetic is done on the reinterpreted elements."""
    width = dst.shape[-1] * dst.element_size()
    word = _WORDS.get(width)
    if word is not None and _regroupable(dst, width) and _regroupable(src, width):
        dst, src = dst.view(word), src.view(word)
    dst.copy_(src)


def _regroupable(t: Tensor, width: int) -> bool:
    """Whether ``t``'s last dim can be viewed as one ``width``-byte element."""
    step = width // t.element_size()
    return (
        t.stride(-1) == 1
        and all(s % step == 0 for s in t.stride()[:-1])
        and t.storage_offset() % step == 0
    )


class _Chunk(NamedTuple):
    """One chunk once its network has run: what an ``emit`` callback receives."""

    rows: Tensor  # (live, n, p): the rows still in play, sorted; the first k are the answer
    dropped: list[Tensor]  # (d, n, p) each: rows the last merges dropped (if asked), unsorted
    planes: Tensor  # (C, n, p): the chunk's input, a view of the caller's tensor
    images: slice
    pixels: slice
    temp: Callable[[str, tuple[int, ...], torch.dtype], Tensor]  # see _Workspace.temp


Fill = Callable[[Tensor, Tensor, Tensor], None]
Emit = Callable[[_Chunk], None]


@dataclass
class _Workspace:
    """A thread's two chunk buffers and the networks built on views of them."""

    buffer: Tensor
    spare: Tensor
    plans: dict[int, tuple[list[Op], Tensor, list[Tensor]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    temps: dict[tuple[str, torch.dtype], Tensor] = field(default_factory=dict)

    def temp(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """A contiguous ``shape`` tensor kept for reuse by every chunk and call. A chunk's
        temporaries (0.25-0.5 MB) are above glibc's mmap threshold: allocated afresh, each
        was mapped and faulted in anew whenever malloc's state said so, which made one
        call 1.4x slower than the next at 512 channels (benchmarks/NOTES.md)."""
        size = math.prod(shape)
        held = self.temps.get((name, dtype))
        if held is None or held.numel() < size:
            held = torch.empty(size, dtype=dtype, device=self.buffer.device)
            self.temps[(name, dtype)] = held
        return held[:size].view(shape)


# Workspaces kept between calls, so a layer called every step does not rebuild its
# network's ~100-1000 views (about a millisecond of Python at 512 channels) or
# re-allocate its buffers; the oldest go once there are more than this many.
_WORKSPACES_KEPT = 16
_workspaces: OrderedDict[tuple[object, ...], _Workspace] = OrderedDict()
_workspaces_lock = threading.Lock()


@contextmanager
def _workspace(key: tuple[object, ...]) -> Iterator[_Workspace]:
    """The kept workspace for ``key`` (slot, C, columns, dtype, device, ...), or a fresh
    one while another thread is using it."""
    with _workspaces_lock:
        space = _workspaces.get(key)
        if space is None:
            _, c, cols, dtype, device, *_ = key
            buffer = torch.empty((c, cols), dtype=dtype, device=device)
            space = _workspaces[key] = _Workspace(buffer, torch.empty_like(buffer))
            while len(_workspaces) > _WORKSPACES_KEPT:
                _workspaces.popitem(last=False)
        _workspaces.move_to_end(key)
    if not space.lock.acquire(blocking=False):
        space = _Workspace(torch.empty_like(space.buffer), torch.empty_like(space.buffer))
        space.lock.acquire()
    try:
        yield space
    finally:
        space.lock.release()


def _select(
    planes: Tensor,
    k: int,
    descending: bool,
    dtype: torch.dtype,
    fill: Fill,
    emit: Emit,
    keep_dropped: bool = False,
) -> None:
    """Top k of every pixel of ``planes`` (C, N, H*W), one cache-sized chunk at a time.

    Each chunk's two buffers take at most :data:`_CHUNK_BYTES`, or
    :data:`_SPLIT_CHUNK_BYTES` when each op splits across torch's threads (and with
    Python threads there are at least as many chunks as threads). ``fill(chunk, buffer,
    spare)`` writes a chunk's (C, n, p) planes into a ``dtype`` buffer of that shape
    (``spare``, another, is free to use until the network runs); ``emit`` then receives
    the sorted rows, and with ``keep_dropped`` the rows the network dropped (to learn the
    best unselected key).

    On a CPU with several torch threads and many chunks (the denoiser's maps), chunks
    are shared out among as many Python threads, each running torch single-threaded on
    its own buffers (torch releases the GIL inside an op); on a busy machine that also
    spares each op's OpenMP barrier. With fewer chunks the GIL handoffs between small
    ops cost more than they gain, and each op splits across torch's threads instead
    (2 threads, quiet machine: 1.1-1.8x faster at Table 1's and VGG-16's shapes,
    benchmarks/NOTES.md).
    """
    c, n, hw = planes.shape
    if c & (c - 1):
        raise ValueError(f"the bitonic network needs a power-of-two channel count, got {c}")
    itemsize = torch.empty((), dtype=dtype).element_size()
    step = max(1, _CHUNK_BYTES // (2 * c * itemsize))
    threads = torch.get_num_threads() if planes.device.type == "cpu" else 1
    if -(-n * hw // step) < _PYTHON_THREADS_MIN_CHUNKS:
        if threads > 1:  # few chunks: each op splits across torch's own threads instead
            step = max(1, _SPLIT_CHUNK_BYTES // (2 * c * itemsize))
        threads = 1
    step = min(step, -(-n * hw // threads))
    chunks = list(_chunks(n, hw, step))
    threads = min(threads, len(chunks))

    def work(first: int) -> None:
        if threads > 1:
            torch.set_num_threads(1)  # this thread's OpenMP setting only
        cols = min(step, n * hw)
        key = (first, c, cols, dtype, planes.device, k, descending, keep_dropped)
        with _workspace(key) as space:
            for images, pixels in chunks[first::threads]:
                chunk = planes[:, images, pixels]
                size = chunk.shape[1] * chunk.shape[2]
                a, b = space.buffer[:, :size], space.spare[:, :size]
                if size not in space.plans:  # every chunk but the last has the first's size
                    space.plans[size] = _stages(a, b, k, descending, keep_dropped)
                ops, rows, dropped = space.plans[size]
                fill(chunk, a.view(chunk.shape), b.view(chunk.shape))
                for fn, left, right, out in ops:
                    fn(left, right, out=out)
                shape = chunk.shape[1:]
                lost = [rows.view(-1, *shape) for rows in dropped]
                emit(_Chunk(rows.view(-1, *shape), lost, chunk, images, pixels, space.temp))

    if threads == 1:
        work(0)
        return
    for done in [_pool(threads).submit(work, first) for first in range(threads)]:
        done.result()


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` worker threads kept for the process: starting threads on
    every call cost 0.1-0.3 ms, as much as a small layer's whole top k."""
    with _pools_lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="topk")
        return _pools[threads]


# Keys (pixels x channels) below which a call runs on one thread: starting the other
# threads costs more than a few 16K-key tiles' work
_KERNEL_KEYS_PER_THREAD = 1 << 16


def path(device: torch.device) -> str:
    """How the bitonic top-k runs for float32 (and 16-bit floats) on ``device``: its times
    depend on it."""
    if device.type != "cpu":
        return "tensor ops"
    return "compiled kernel" if KERNEL else "tensor ops (the compiled kernel was not built)"


def uses_kernel(x: Tensor) -> bool:
    """Whether the top k of ``x`` runs in the compiled kernel (float32, float16 or
    bfloat16 on the CPU, where it was built) rather than in tensor ops."""
    if _topk_kernel is None or x.device.type != "cpu" or x.dtype not in BITS:
        return False
    return x.dtype == torch.float32 or x.shape[1] <= 1 << 16  # a 16-bit channel field


def _kernel_topk(x: Tensor, k: int, largest: bool) -> tuple[Tensor, Tensor]:
    """Channels (int64) and values of the top k, as :func:`_topk_index` gives them, from
    the compiled kernel: one pass per tile of pixels (keys, network, exact repair) in
    place of the tensor ops' dozens of passes over each chunk, on torch's threads.

    Under torch.compile it runs as it is, between the graphs around it (a graph break);
    the wrapper that says so is made then, as making it imports torch._dynamo (1.4 s)."""
    if torch.compiler.is_compiling():
        return torch.compiler.disable(_run_kernel)(x, k, largest)
    return _run_kernel(x, k, largest)


def _run_kernel(x: Tensor, k: int, largest: bool) -> tuple[Tensor, Tensor]:
    n, c, h, w = x.shape
    x = x.detach().contiguous()
    index = torch.empty((n, k, h, w), dtype=torch.int64)
    values = torch.empty((n, k, h, w), dtype=x.dtype)
    threads = max(1, min(torch.get_num_threads(), x.numel() // _KERNEL_KEYS_PER_THREAD))
    half = x.element_size() == 2
    _topk_kernel.topk(
        x.data_ptr(), values.data_ptr(), index.data_ptr(), n, c, h * w, k, largest, half, threads
    )
    return index, values


def topk_values(x: Tensor, k: int, largest: bool) -> Tensor:
    """The k largest (smallest) values across channels of ``x`` (N, C, H, W), sorted.

    No gradient flows (the network's max/min would split it between ties); use
    :func:`topk` when one is needed. NaN is not supported.
    """
    if uses_kernel(x):
        return _kernel_topk(x, k, largest)[1]
    n, _, h, w = x.shape
    out = torch.empty((n, k, h, w), dtype=x.dtype, device=x.device)
    rows = out.view(n, k, h * w)

    def emit(done: _Chunk) -> None:
        _copy_across(rows[done.images, :, done.pixels], done.rows[:k].transpose(0, 1))

    planes = x.detach().transpose(0, 1).flatten(2)
    copy = lambda chunk, buf, _spare: _copy_across(buf, chunk)  # noqa: E731
    _select(planes, k, largest, x.dtype, copy, emit)
    return out


def _topk_index(x: Tensor, k: int, largest: bool) -> tuple[Tensor, Tensor]:
    """Channels (int64) and values of the k largest (smallest) values at each pixel of
    ``x`` (N, C, H, W), both (N, k, H, W), in output order: by value, equal values by
    channel.

    The network sorts 32-bit integer keys: a value's order-preserving bits (sign and
    magnitude made two's complement, so -0.0 and +0.0 tie as in the reference), negated
    for largest, above its channel. A 16-bit float's bits fit whole. A float32's do
    not: its lowest log2(C) bits give way to the channel (:func:`_truncated_order`), so
    values that differ only there rank by channel, and :func:`_repair` then puts each
    chunk right from its full bits. Half the bytes of 64-bit keys, so the network costs
    about what sorting the values themselves does.
    """
    if uses_kernel(x):
        return _kernel_topk(x, k, largest)
    n, c, h, w = x.shape
    bits_dtype = BITS[x.dtype]
    cut = c.bit_length() - 1 if bits_dtype == torch.int32 else 0  # value bits given up
    field = cut if cut else 16  # the channel's bits at the bottom of the key
    low = (1 << field) - 1
    channel = torch.arange(c, dtype=torch.int32, device=x.device).view(c, 1, 1)

    def fill(chunk: Tensor, keys: Tensor, spare: Tensor) -> None:
        if cut:
            _truncated_order(chunk, keys, spare, cut, largest, channel)
            return
        bits = chunk.contiguous().view(bits_dtype).clone()  # a 16-bit float's bits whole
        _to_order(bits, torch.empty_like(bits))
        keys.copy_(bits)
        if largest:
            keys.bitwise_not_()  # -b - 1: reverses the order without overflowing
        torch.add(channel, keys, alpha=1 << field, out=keys)

    index = torch.empty((n, k, h, w), dtype=torch.int64, device=x.device)
    values = torch.empty((n, k, h, w), dtype=x.dtype, device=x.device)
    index_rows, value_rows = index.view(n, k, h * w), values.view(n, k, h * w)

    def emit(done: _Chunk) -> None:
        chosen = done.temp("chosen", done.rows[:k].shape, torch.int64)
        torch.bitwise_and(done.rows[:k], low, out=chosen)
        picked = done.temp("picked", chosen.shape, x.dtype)
        torch.gather(done.planes, 0, chosen, out=picked)
        if cut:
            picked = _repair(done, chosen, picked, largest, cut)
        index_rows[done.images, :, done.pixels] = chosen.transpose(0, 1)
        _copy_across(value_rows[done.images, :, done.pixels], picked.transpose(0, 1))

    planes = x.detach().transpose(0, 1).flatten(2)
    _select(planes, k, False, torch.int32, fill, emit, keep_dropped=bool(cut))
    return index, values


# Odd-even transposition rounds tried on a chunk's truncation misorders before its
# still-unsorted pixels go to the stable sort: a run of values that agree in all but
# their lowest bits needs about one round per two of its members.
_REPAIR_ROUNDS = 4


def _repair(done: _Chunk, chosen: Tensor, picked: Tensor, largest: bool, cut: int) -> Tensor:
    """Make ``chosen`` (k, n, p), ranked by keys that lost ``cut`` value bits, exact (in
    place) and return its values; ``picked`` holds them as ranked.

    Inside the top k, values that share a truncated key are adjacent but ranked by
    channel: in the pixels where that put two out of order (about a fifth of them at 512
    channels), a few odd-even transposition rounds, swapping only strictly misordered
    neighbours (so equal values keep their channel order), sort them. At the cut, an
    unselected value may share the last selected one's truncated key; when that group
    holds unequal values the pixel is redone with the reference's stable sort, as is
    any still unsorted. Random data rarely needs the sort; ties (ReLU's zeros) share
    all their bits and need neither.
    """
    k = chosen.shape[0]
    flat_chosen, flat_picked = chosen.view(k, -1), picked.view(k, -1)
    redo = _unsorted(picked, largest)
    if redo is not None:  # index_select/index_copy_: several times faster than [:, i, j]
        columns = redo.view(-1).nonzero().squeeze(1)
        fixed, values, left = _transpose(
            flat_chosen.index_select(1, columns), flat_picked.index_select(1, columns), largest
        )
        flat_chosen.index_copy_(1, columns, fixed)
        flat_picked.index_copy_(1, columns, values)
        redo = None if left is None else torch.zeros_like(redo)
        if redo is not None:
            redo.view(-1)[columns[left]] = True
    mixed = _mixed_at_cut(done, chosen, cut)
    if mixed is not None:
        redo = mixed if redo is None else redo | mixed
    if redo is None:
        return picked
    images, pixels = redo.nonzero(as_tuple=True)
    exact = torch.sort(done.planes[:, images, pixels], dim=0, descending=largest, stable=True)
    chosen[:, images, pixels] = exact.indices[:k]
    return done.planes.gather(0, chosen)


def _unsorted(values: Tensor, largest: bool) -> Tensor | None:
    """The columns (all dims but the first) of ``values`` that are out of order, or None."""
    if values.shape[0] < 2:
        return None
    wrong = values[:-1] < values[1:] if largest else values[:-1] > values[1:]
    columns = wrong.view(torch.uint8).amax(0)  # a bool reduction is ~10x slower here
    return columns.bool() if bool(columns.amax()) else None


def _transpose(
    chosen: Tensor, picked: Tensor, largest: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Odd-even transposition rounds on the columns of (value, channel) pairs, ``picked``
    and ``chosen`` (k, m), each round on the columns still unsorted, until none is or
    :data:`_REPAIR_ROUNDS` have run: the channels, their values and the columns still
    unsorted (indices, or None)."""
    # each value's bits above its channel (one int64), so one swap moves both
    pairs = picked.view(torch.int32).long() * (1 << 32) | chosen
    columns = None
    for _ in range(_REPAIR_ROUNDS):
        work = pairs if columns is None else pairs[:, columns]
        values = _high_halves(work)
        for start in (0, 1):
            a, b = work[start:-1:2], work[start + 1 :: 2]
            va, vb = values[start:-1:2], values[start + 1 :: 2]
            delta = (a ^ b) * (va < vb if largest else va > vb)
            a ^= delta
            b ^= delta
        if columns is not None:
            pairs[:, columns] = work
        left = _unsorted(values, largest)
        if left is None:
            columns = None
            break
        still = left.nonzero().squeeze(1)
        columns = still if columns is None else columns[still]
    return pairs & ((1 << 32) - 1), _high_halves(pairs), columns


def _high_halves(pairs: Tensor) -> Tensor:
    """The float32 values held in the high 32 bits of int64 ``pairs`` (a view)."""
    return pairs.view(torch.int32)[..., 1::2].view(torch.float32)


def _mixed_at_cut(done: _Chunk, chosen: Tensor, cut: int) -> Tensor | None:
    """The pixels (n, p) where an unselected value shares the last selected one's
    truncated key and that group's values are not all equal, or None."""
    k = chosen.shape[0]
    unselected = _best_unselected(done, k)
    if unselected is None:
        return None
    shared = (unselected >> cut) == (done.rows[k - 1] >> cut)
    shared &= done.planes.gather(0, chosen[k - 1 :])[0] != 0  # zeros' group: zeros alone
    if not bool(shared.view(torch.uint8).amax()):
        return None
    columns = shared.flatten().nonzero().squeeze(1)
    group = _order_bits(done.planes.reshape(done.planes.shape[0], -1)[:, columns], cut)
    last = group.gather(0, chosen.flatten(1)[k - 1 :, columns])
    mixed = torch.zeros_like(shared)
    mixed.view(-1)[columns] = (((group >> cut) == (last >> cut)) & (group != last)).any(0)
    return mixed if bool(mixed.view(torch.uint8).amax()) else None


def _to_order(bits: Tensor, sign: Tensor, cut: int = 0) -> None:
    """Turn a float's bits, in place, into integers that order like the floats: sign and
    magnitude become two's complement (``sign``: a scratch buffer like ``bits``).

    -0.0 and +0.0 tie in the reference, so they must share a key. With ``cut`` low bits
    to be given up, positive values also move up by 2^cut - 1: then the zeros' truncated
    group holds nothing but zeros, and ReLU's tied zeros at the top k's cut need no check.
    """
    torch.bitwise_right_shift(bits, torch.iinfo(bits.dtype).bits - 1, out=sign)
    bits &= torch.iinfo(bits.dtype).max
    bits ^= sign
    if cut:  # (m ^ s) - s for negatives, m + 2^cut - 1 for positives and +0.0
        sign &= (1 << cut) - 2
        bits += (1 << cut) - 1
    bits -= sign


def _truncated_order(
    chunk: Tensor, keys: Tensor, sign: Tensor, cut: int, largest: bool, channel: Tensor
) -> None:
    """Write into ``keys`` (int32) each float32 of ``chunk`` as its key: ±ceil(|bits| /
    2^cut), negated for largest (the order of :func:`_to_order`'s bits with their lowest
    ``cut`` dropped: zeros alone in their group, -0.0 with +0.0) in the high bits, its
    ``channel`` (C, 1, 1) in the low ``cut``; in 7 passes."""
    _copy_across(keys.view(torch.float32), chunk)
    torch.bitwise_right_shift(keys, 31, out=sign)  # 0 for +, -1 for -
    keys += (1 << cut) - 1  # the sign bit stays: |bits| + 2^cut - 1 < 2^31
    keys &= torch.iinfo(torch.int32).max & -(1 << cut)  # ceil(|bits| / 2^cut) * 2^cut
    keys ^= sign  # then minus the sign: negated where it is -1 (and -0.0 becomes 0)
    if largest:  # channel - ((key ^ s) - s) = (s + channel) - (key ^ s)
        sign += channel
        torch.sub(sign, keys, out=keys)
    else:  # (key ^ s) - (s - channel)
        sign -= channel
        torch.sub(keys, sign, out=keys)


def _order_bits(values: Tensor, cut: int) -> Tensor:
    """:func:`_to_order` of a float32 tensor's values, as a new int32 tensor."""
    bits = values.view(torch.int32).clone()
    _to_order(bits, torch.empty_like(bits), cut)
    return bits


def _best_unselected(done: _Chunk, k: int) -> Tensor | None:
    """The smallest key (n, p) that did not make the top k, or None when all did."""
    rest = [rows.amin(0) for rows in (done.rows[k:], *done.dropped) if len(rows)]
    best = rest[0] if rest else None
    for other in rest[1:]:
        best = torch.minimum(best, other)
    return best


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
    :data:`BITS`; NaN is not supported.
    """
    index, values = _topk_index(x, k, largest)
    return _SelectChannels.apply(x, values, index)
