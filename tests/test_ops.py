import pytest
import torch

from registry import FeaturePool, TopKPool, feature_pool, topk_pool


def loop_feature_pool(x: torch.Tensor, stride: int, mode: str) -> torch.Tensor:
    n, c, h, w = x.shape
    out = torch.empty(n, c // stride, h, w, dtype=x.dtype)
    for j in range(c // stride):
        group = x[:, j * stride : (j + 1) * stride]
        out[:, j] = group.max(dim=1).values if mode == "max" else group.min(dim=1).values
    return out


def loop_topk_pool(x: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
    n, _, h, w = x.shape
    out = torch.empty(n, k, h, w, dtype=x.dtype)
    for b in range(n):
        for i in range(h):
            for j in range(w):
                values = sorted(x[b, :, i, j].tolist(), reverse=largest)
                out[b, :, i, j] = torch.tensor(values[:k], dtype=x.dtype)
    return out


@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize(
    ("shape", "stride"),
    [((2, 8, 3, 5), 2), ((1, 12, 4, 4), 3), ((3, 32, 2, 7), 4), ((1, 6, 1, 1), 6)],
)
def test_feature_pool_matches_loop(shape, stride, mode):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(stride))
    got = feature_pool(x, stride, mode)
    assert got.shape == (shape[0], shape[1] // stride, shape[2], shape[3])
    torch.testing.assert_close(got, loop_feature_pool(x, stride, mode), rtol=0, atol=0)


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize(
    ("shape", "k"), [((2, 8, 3, 3), 4), ((1, 7, 2, 5), 3), ((2, 16, 2, 2), 16), ((1, 5, 3, 3), 1)]
)
def test_topk_pool_matches_loop(shape, k, largest):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(k))
    got = topk_pool(x, k, largest)
    assert got.shape == (shape[0], k, shape[2], shape[3])
    torch.testing.assert_close(got, loop_topk_pool(x, k, largest), rtol=0, atol=0)


def test_topk_output_is_sorted_and_min_mode_is_negated_max():
    x = torch.randn(2, 10, 4, 4)
    top = topk_pool(x, 5)
    assert (top[:, :-1] >= top[:, 1:]).all()
    torch.testing.assert_close(feature_pool(x, 2, "min"), -feature_pool(-x, 2, "max"))


@pytest.mark.parametrize("mode", ["max", "min"])
def test_feature_pool_gradcheck(mode):
    x = torch.randn(2, 6, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: feature_pool(t, 3, mode), (x,))


@pytest.mark.parametrize("largest", [True, False])
def test_topk_pool_gradcheck(largest):
    x = torch.randn(2, 6, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: topk_pool(t, 2, largest), (x,))


def test_gradient_goes_only_to_the_selected_channel():
    x = torch.tensor([1.0, 5.0, 3.0, 2.0]).view(1, 4, 1, 1).requires_grad_()
    feature_pool(x, 2).sum().backward()
    assert x.grad.flatten().tolist() == [0.0, 1.0, 1.0, 0.0]
    x.grad = None
    topk_pool(x, 1).sum().backward()
    assert x.grad.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_any_float_dtype(dtype):
    x = torch.randn(2, 8, 3, 3).to(dtype)
    assert feature_pool(x, 2).dtype == dtype
    assert topk_pool(x, 4).dtype == dtype
    torch.testing.assert_close(feature_pool(x, 2).float(), feature_pool(x.float(), 2))


def test_channels_last_input_gives_same_values_and_gradients():
    x = torch.randn(2, 16, 5, 5)
    xc = x.to(memory_format=torch.channels_last).requires_grad_()
    xr = x.clone().requires_grad_()
    for op in (lambda t: feature_pool(t, 4), lambda t: topk_pool(t, 4)):
        torch.testing.assert_close(op(xc), op(xr))
        op(xc).square().sum().backward()
        op(xr).square().sum().backward()
        torch.testing.assert_close(xc.grad, xr.grad)
        xc.grad = xr.grad = None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    x = torch.randn(4, 32, 8, 8)
    torch.testing.assert_close(feature_pool(x.cuda(), 4).cpu(), feature_pool(x, 4))
    torch.testing.assert_close(topk_pool(x.cuda(), 8).cpu(), topk_pool(x, 8))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: feature_pool(x, 3), "not divisible by stride 3"),
        (lambda x: feature_pool(x, 0), "positive integer"),
        (lambda x: feature_pool(x, 2, "mean"), "'max' or 'min'"),
        (lambda x: feature_pool(x[0], 2), r"\(N, C, H, W\)"),
        (lambda x: topk_pool(x, 0), r"1\.\.8"),
        (lambda x: topk_pool(x, 9), r"1\.\.8"),
        (lambda x: topk_pool(x, 2.5), r"1\.\.8"),
    ],
)
def test_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(torch.randn(2, 8, 3, 3))


def test_modules_wrap_the_functions():
    x = torch.randn(1, 8, 2, 2)
    torch.testing.assert_close(FeaturePool(2, "min")(x), feature_pool(x, 2, "min"))
    torch.testing.assert_close(TopKPool(3, largest=False)(x), topk_pool(x, 3, largest=False))
    assert sum(p.numel() for p in FeaturePool(2).parameters()) == 0
