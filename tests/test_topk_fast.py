"""The bitonic top-k against the reference: values, gradient routing, ties, dtypes, layouts.

Tests marked ``path`` run twice: on the compiled kernel (registry/_topk_kernel.c) and on the
tensor ops it replaces where it was built; ``tensor_ops`` tests are about the latter alone.
"""

import shutil
import sysconfig
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import patch

import pytest
import torch
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import registry.bitonic
import registry.ops
from registry import topk_pool

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
GRAD_DTYPES = [torch.float32, torch.bfloat16, torch.float16]
NOT_BUILT = "the compiled kernel was not built (pip install -e . builds it with a C compiler)"


def make_input(kind: str, shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Random maps: distinct values, ReLU'd (many tied zeros) or small integers (ties)."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "integers":
        x = torch.randint(-2, 3, shape, generator=gen).float()
    else:
        x = torch.randn(shape, generator=gen)
        x = x.relu() if kind == "relu" else x
    return x.to(dtype)


@pytest.fixture(params=["kernel", "tensor ops"])
def path(request, monkeypatch):
    """The bitonic path under test: the compiled kernel, or the tensor ops without it."""
    if request.param == "tensor ops":
        monkeypatch.setattr(registry.bitonic, "_topk_kernel", None)
    elif not registry.bitonic.KERNEL:
        pytest.skip(NOT_BUILT)
    return request.param


@pytest.fixture
def tensor_ops(monkeypatch):
    monkeypatch.setattr(registry.bitonic, "_topk_kernel", None)


def run(x: torch.Tensor, k: int, largest: bool, impl: str, upstream: torch.Tensor):
    """Values and the gradient each input receives for a given upstream gradient."""
    x = x.detach().clone().requires_grad_()
    out = topk_pool(x, k, largest, impl=impl)
    out.backward(upstream)
    return out.detach(), x.grad


@pytest.mark.parametrize("dtype", GRAD_DTYPES)
@pytest.mark.parametrize("kind", ["distinct", "relu", "integers"])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("channels", "k"), [(2, 1), (8, 4), (32, 8), (64, 32), (16, 16)])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.usefixtures("path")
def test_bitonic_matches_reference_values_and_gradients(
    dtype, kind, channels_last, channels, k, largest
):
    x = make_input(kind, (3, channels, 5, 7), dtype, seed=channels + k)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    upstream = torch.randn(3, k, 5, 7, generator=torch.Generator().manual_seed(1)).to(dtype)
    got_values, got_grad = run(x, k, largest, "bitonic", upstream)
    ref_values, ref_grad = run(x, k, largest, "reference", upstream)
    assert got_values.shape == (3, k, 5, 7) and got_values.dtype == dtype
    torch.testing.assert_close(got_values, ref_values, rtol=0, atol=0)
    torch.testing.assert_close(got_grad, ref_grad, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["distinct", "relu", "integers"])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.usefixtures("path")
def test_bitonic_without_gradient_matches_reference(dtype, kind, largest):
    x = make_input(kind, (4, 32, 3, 5), dtype, seed=7)
    with torch.no_grad():
        got = topk_pool(x, 16, largest, impl="bitonic")
    assert got.is_contiguous()
    torch.testing.assert_close(got, topk_pool(x, 16, largest, impl="reference"), rtol=0, atol=0)


@pytest.mark.usefixtures("path")
def test_ties_go_to_the_lower_channel_first():
    x = torch.tensor([0.0, 2.0, 2.0, -0.0, 1.0, 2.0, 0.0, 1.0]).view(1, 8, 1, 1)
    for impl in ("reference", "bitonic"):
        xr = x.clone().requires_grad_()
        out = topk_pool(xr, 4, impl=impl)
        # slots get upstream gradients 1, 2, 3, 4: tied 2.0s in channel order, then 1.0 at 4
        out.backward(torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1))
        assert out.flatten().tolist() == [2.0, 2.0, 2.0, 1.0]
        assert xr.grad.flatten().tolist() == [0, 1, 2, 0, 4, 3, 0, 0], impl
        xr.grad = None
        topk_pool(xr, 3, largest=False, impl=impl).backward(
            torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
        )
        # -0.0 ties with +0.0: the zeros in channels 0, 3, 6 in that order
        assert xr.grad.flatten().tolist() == [1, 0, 0, 2, 0, 0, 3, 0], impl


@pytest.mark.usefixtures("path")
def test_infinities_sort_like_the_reference():
    x = torch.tensor([1.0, float("inf"), -float("inf"), 0.0] * 4).view(1, 16, 1, 1)
    for largest in (True, False):
        for k in (1, 8, 16):
            torch.testing.assert_close(
                topk_pool(x.requires_grad_(), k, largest, impl="bitonic"),
                topk_pool(x, k, largest, impl="reference"),
            )


def test_reference_agrees_with_torch_topk_where_topk_is_defined():
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 6, 4, 4, dtype=torch.float64)
    ours = topk_pool(x, 6, impl="reference")
    torch.testing.assert_close(ours, torch.topk(x, 6, dim=1).values)
    (grad,) = torch.autograd.grad(ours, x, upstream)
    (topk_grad,) = torch.autograd.grad(torch.topk(x, 6, dim=1).values, x, upstream)
    torch.testing.assert_close(grad, topk_grad)  # no ties: the routing is the same
    relu = torch.randn(4, 32, 3, 3).relu()
    torch.testing.assert_close(topk_pool(relu, 16), torch.topk(relu, 16, dim=1).values)


@pytest.mark.parametrize("chunk_bytes", [2560, 12800])  # within an image / whole images
@pytest.mark.usefixtures("tensor_ops")
def test_chunked_pixels_give_the_same_result(monkeypatch, chunk_bytes):
    x = make_input("integers", (5, 16, 7, 3), torch.float32, seed=3)
    upstream = torch.randn(5, 8, 7, 3)
    whole = run(x, 8, True, "bitonic", upstream)
    monkeypatch.setattr(registry.bitonic, "_CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(registry.bitonic, "_SPLIT_CHUNK_BYTES", chunk_bytes)  # several threads
    for got, want in zip(run(x, 8, True, "bitonic", upstream), whole, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(topk_pool(x, 8, impl="bitonic"), whole[0], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [(1, 1), (1, 2), (2, 2), (2, 4), (1, 8), (3, 3)])
@pytest.mark.parametrize("images_per_chunk", [3, 7])  # a short last chunk / one chunk
@pytest.mark.usefixtures("tensor_ops")
def test_small_maps_move_as_one_element_per_row_and_change_nothing(
    monkeypatch, dtype, hw, images_per_chunk
):
    """Maps of 2-16 bytes a row (VGG-16's 2x2 at float32: 16) are copied between the
    image-major and channel-major layouts one row at a time, a full chunk through torch's
    tiled transpose: values and gradients stay the reference's, signed zeros included."""
    x = make_input("integers", (7, 16, *hw), dtype, seed=hw[0] * 10 + hw[1])
    flip = torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) < 0.5
    x = torch.where((x == 0) & flip, torch.tensor(-0.0, dtype=dtype), x)
    chunk_bytes = 2 * 16 * 4 * hw[0] * hw[1] * images_per_chunk  # with 32-bit keys
    monkeypatch.setattr(registry.bitonic, "_CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(registry.bitonic, "_SPLIT_CHUNK_BYTES", chunk_bytes)
    with torch.no_grad():
        got = topk_pool(x, 5, impl="bitonic")
    want = topk_pool(x, 5, impl="reference")
    assert torch.equal(got, want)  # without gradients -0.0 and +0.0 may trade places
    if dtype in GRAD_DTYPES:  # with them, the very bits
        upstream = torch.randn(7, 5, *hw, generator=torch.Generator().manual_seed(3)).to(dtype)
        for largest in (True, False):
            ref = run(x, 5, largest, "reference", upstream)
            for got, want in zip(run(x, 5, largest, "bitonic", upstream), ref, strict=True):
                assert torch.equal(got.view(torch.uint8), want.view(torch.uint8))


def test_auto_picks_bitonic_only_where_it_applies(path):
    pick = registry.ops._topk_impl
    big = torch.randn(8, 32, 16, 16)
    assert pick(big, "auto") == "bitonic"
    assert pick(big.requires_grad_(), "auto") == "bitonic"
    small = torch.randn(2, 32, 4, 4)  # too small for the tensor ops to pay off
    assert pick(small, "auto") == ("bitonic" if path == "kernel" else "reference")
    assert pick(small.double(), "auto") == "reference"  # float64: the tensor ops
    assert pick(torch.randn(8, 48, 16, 16), "auto") == "reference"  # not a power of two
    assert pick(torch.randn(8, 32, 16, 16, dtype=torch.float64), "auto") == "bitonic"
    assert pick(torch.randn(8, 32, 16, 16, dtype=torch.float64).requires_grad_(), "auto") == (
        "reference"
    )
    nan = torch.randn(8, 32, 16, 16)
    nan[3, 5, 2, 2] = float("nan")
    assert pick(nan, "auto") == "reference"
    assert pick(big, "reference") == "reference"


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.randn(1, 6, 2, 2), "power-of-two"),
        (torch.randn(1, 8, 2, 2, dtype=torch.float64).requires_grad_(), "float32"),
        (torch.full((1, 8, 2, 2), float("nan")), "NaN"),
        (torch.ones(1, 8, 2, 2, dtype=torch.int64), "float dtypes"),
    ],
)
def test_bitonic_refuses_what_it_cannot_do(x, message):
    with pytest.raises(ValueError, match=message):
        topk_pool(x, 2, impl="bitonic")


def test_unknown_impl_is_a_value_error():
    with pytest.raises(ValueError, match="auto, reference, bitonic"):
        topk_pool(torch.randn(1, 8, 2, 2), 2, impl="fast")


def test_nan_takes_the_reference_path_and_ranks_nan_first():
    x = torch.randn(4, 32, 16, 16)
    x[0, 3, 0, 0] = float("nan")
    out = topk_pool(x, 4)
    assert torch.isnan(out[0, 0, 0, 0]) and not torch.isnan(out[0, 1:, 0, 0]).any()


def test_opposite_infinities_are_not_mistaken_for_nan():
    x = torch.randn(4, 32, 16, 16)
    x[0, 0, 0, 0], x[1, 1, 1, 1] = float("inf"), -float("inf")  # their sum is NaN
    assert registry.ops._topk_impl(x, "bitonic") == "bitonic"


@pytest.mark.parametrize("dtype", GRAD_DTYPES)
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.usefixtures("path")
def test_values_are_the_inputs_bits_signed_zeros_included(dtype, largest):
    """-0.0 ties with +0.0 in the ranking, yet each output is the very value of its input."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(-1, 2, (3, 16, 4, 4), generator=gen).to(dtype) * 0.0  # signed zeros
    x[:, ::3] += torch.randn(3, 6, 4, 4, generator=gen).to(dtype)
    x.requires_grad_()
    got, want = topk_pool(x, 8, largest, impl="bitonic"), topk_pool(x, 8, largest, "reference")
    bits = registry.bitonic.BITS[dtype]
    assert torch.equal(got.detach().view(bits), want.detach().view(bits))


@pytest.mark.parametrize("python_threads_from", [1, 10**9])  # Python threads, torch's
@pytest.mark.usefixtures("tensor_ops")
def test_thread_count_changes_chunks_not_results(monkeypatch, python_threads_from):
    monkeypatch.setattr(registry.bitonic, "_CHUNK_BYTES", 4096)  # 8 pixels per thread
    monkeypatch.setattr(registry.bitonic, "_SPLIT_CHUNK_BYTES", 4096)
    monkeypatch.setattr(registry.bitonic, "_PYTHON_THREADS_MIN_CHUNKS", python_threads_from)
    x = make_input("relu", (6, 32, 9, 9), torch.float32, seed=11)
    upstream = torch.randn(6, 16, 9, 9)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(run(x, 16, True, "bitonic", upstream))
    finally:
        torch.set_num_threads(before)
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def _near(shape: tuple[int, ...], spread: int, seed: int) -> torch.Tensor:
    """float32 maps whose values differ only in their lowest bits (1.0 plus 0..spread-1 ulps,
    half of them negated): the 32-bit keys, which give those bits to the channel, tie them."""
    gen = torch.Generator().manual_seed(seed)
    bits = 0x3F800000 + torch.randint(0, spread, shape, generator=gen, dtype=torch.int32)
    sign = torch.randint(0, 2, shape, generator=gen, dtype=torch.int32) << 31
    return (bits | sign).view(torch.float32)


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize(
    ("case", "regrouped"),
    [
        ("pairs", False),  # distinct values plus near-twins inside the top k: reordered
        ("crowd", True),  # most values in a few truncated groups: ranked again at the cut
        ("straddle", True),  # 1 + 1 ulp and 1 + 2 ulps share a truncated key across the cut
        ("denormal", False),  # zeros at the cut: their truncated group holds only zeros
    ],
)
def test_float32_keys_that_lost_low_bits_are_repaired(monkeypatch, path, largest, case, regrouped):
    """Each path repairs what the truncated keys misordered, and takes its slow road (the
    tensor ops' stable sort, the kernel's ranking of the cut's whole group) only where an
    unselected value shares the last selected one's truncated key."""
    shape, channels = (3, 64, 5, 4), 64
    if case == "pairs":
        x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
        x[:, 1::2] = x[:, ::2] * (1 + 2**-22)  # each odd channel a near-twin of the one before
    elif case == "crowd":
        x = _near(shape, 4 * channels, seed=3)
    elif case == "straddle":
        x = torch.arange(channels, dtype=torch.float32).sub(channels / 2).mul(10)
        x = x.view(1, channels, 1, 1).expand(shape).clone()  # channels 33.. hold 10 to 310
        x.view(torch.int32)[:, (20, 31)] = torch.tensor(
            [0x3F800001, 0x3F800002], dtype=torch.int32
        ).view(1, 2, 1, 1)
        x = x if largest else -x
    else:
        x = torch.zeros(shape)
        x.view(torch.int32)[:, 1::4] = 1  # the smallest positive denormal, 1.4e-45
        x.view(torch.int32)[:, 2::4] = -(2**31) + 1  # and its negative
    upstream = torch.randn(3, channels // 2, 5, 4, generator=torch.Generator().manual_seed(4))
    sorts, repairs = [], []
    real_sort = torch.sort
    monkeypatch.setattr(torch, "sort", lambda *a, **kw: sorts.append(1) or real_sort(*a, **kw))
    if path == "kernel":
        kernel = registry.bitonic._topk_kernel
        spy = lambda *a: repairs.append(kernel.topk(*a)) or repairs[-1]  # noqa: E731
        monkeypatch.setattr(registry.bitonic, "_topk_kernel", SimpleNamespace(topk=spy))
    got = run(x, channels // 2, largest, "bitonic", upstream)
    if path == "kernel":
        reordered, again = map(sum, zip(*repairs, strict=True))
        assert (again > 0, reordered > 0) == (regrouped, case != "denormal")
        assert not sorts
    else:
        assert bool(sorts) == regrouped
    want = run(x, channels // 2, largest, "reference", upstream)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("shape", [(3, 16, 5, 7), (2, 8, 40, 30)])  # tiles across / in images
def test_kernel_threads_share_tiles_not_results(monkeypatch, threads, shape):
    if not registry.bitonic.KERNEL:
        pytest.skip(NOT_BUILT)
    x = make_input("integers", shape, torch.float32, seed=9)
    upstream = torch.randn(shape[0], shape[1] // 2, *shape[2:])
    whole = run(x, shape[1] // 2, True, "bitonic", upstream)
    monkeypatch.setattr(registry.bitonic, "_KERNEL_KEYS_PER_THREAD", 1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        split = run(x, shape[1] // 2, True, "bitonic", upstream)
    finally:
        torch.set_num_threads(before)
    for got, want in zip(split, whole, strict=True):
        assert torch.equal(got, want)
    reference = run(x, shape[1] // 2, True, "reference", upstream)
    for got, want in zip(split, reference, strict=True):
        assert torch.equal(got, want)


def test_the_kernel_is_built_where_a_compiler_and_python_headers_are():
    """The kernel is an optional extension: an install without a compiler still works, so
    a build that broke would only show as lost speed. Where it can be built, it must be."""
    headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    compiler = any(shutil.which(cc) for cc in ("cc", "gcc", "clang"))
    if not (headers and compiler):
        pytest.skip("no C compiler or Python headers here: the tensor-op path runs instead")
    assert registry.bitonic.KERNEL, "registry/_topk_kernel.c did not build: run pip install -e ."


@st.composite
def _maps(draw) -> tuple[torch.Tensor, int]:
    """float32 maps of 1-512 channels and a k: distinct values, ReLU'd ones, small integers,
    or values a few hundred ulps apart (the truncated keys' hard case), signs mixed."""
    channels = 2 ** draw(st.integers(0, 9))
    k = draw(st.integers(1, channels))
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 40))
    kind = draw(st.sampled_from(["distinct", "relu", "integers", "near"]))
    seed = draw(st.integers(0, 2**16))
    if kind != "near":
        return make_input(kind, (n, channels, h, w), torch.float32, seed), k
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, h, w, generator=gen).view(torch.int32)
    spread = torch.randint(-600, 600, (n, channels, h, w), generator=gen, dtype=torch.int32)
    x = (base + spread).view(torch.float32)
    return torch.where(torch.rand(x.shape, generator=gen) < 0.3, -x, x), k


@given(
    maps=_maps(),
    dtype=st.sampled_from(GRAD_DTYPES),
    largest=st.booleans(),
    threads=st.integers(1, 3),
)
@hypothesis_settings(max_examples=80, deadline=None)
def test_the_kernel_gives_the_stable_sorts_bits_and_channels(maps, dtype, largest, threads):
    """The kernel alone, on random shapes and values (float32's truncated keys, 16-bit
    floats' whole ones): its values are the stable sort's, bit for bit, and its channels
    are the sort's indices, on any number of threads."""
    if not registry.bitonic.KERNEL:
        pytest.skip(NOT_BUILT)
    x, k = maps[0].to(dtype), maps[1]
    want = torch.sort(x, dim=1, descending=largest, stable=True)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with patch.object(registry.bitonic, "_KERNEL_KEYS_PER_THREAD", 1):
            index, values = registry.bitonic._kernel_topk(x, k, largest)
    finally:
        torch.set_num_threads(before)
    bits = registry.bitonic.BITS[dtype]
    assert torch.equal(values.view(bits), want.values[:, :k].view(bits))
    assert torch.equal(index, want.indices[:, :k])


@pytest.mark.usefixtures("path")
def test_under_torch_compile_the_kernel_runs_between_graphs_with_eager_results():
    """torch.compile breaks its graph around the kernel and runs it as it is: the same
    values and gradients as eager (aot_eager: the graphs themselves are not rewritten)."""
    torch._dynamo.reset()

    def block(x: torch.Tensor) -> torch.Tensor:
        return topk_pool(x * 2, 8, impl="bitonic").relu() - 1

    x = make_input("relu", (4, 32, 7, 7), torch.float32, seed=3)
    upstream = torch.randn(4, 8, 7, 7, generator=torch.Generator().manual_seed(4))
    eager, compiled = x.clone().requires_grad_(), x.clone().requires_grad_()
    block(eager).backward(upstream)
    out = torch.compile(block, backend="aot_eager")(compiled)
    out.backward(upstream)
    torch.testing.assert_close(out, block(x), rtol=0, atol=0)
    torch.testing.assert_close(compiled.grad, eager.grad, rtol=0, atol=0)
