import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from harness.data.classification import ClassificationData
from harness.tables.paper import TABLES
from harness.tasks.classification import ClassificationProtocol
from harness.tasks.classification.augment import InputPipeline, crop_flip, draw_crop_flip


def _reference(images, draws, padding):
    """torchvision's per-image pad, crop and flip on the CPU, given the same draws."""
    out = []
    for image, (top, left, flip) in zip(images, draws.tolist(), strict=True):
        crop = TF.crop(TF.pad(image, [padding]), top, left, *image.shape[-2:])
        out.append(TF.horizontal_flip(crop) if flip else crop)
    return torch.stack(out)


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("padding", "flip"), [(4, True), (4, False), (0, True), (2, True)])
def test_batched_crop_flip_matches_torchvision_per_image(padding, flip, device):
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=gen)
    draws = draw_crop_flip(64, padding, flip, gen)
    got = crop_flip(images.to(device), draws.to(device), padding).cpu()
    assert got.dtype == torch.uint8 and got.shape == images.shape
    assert torch.equal(got, _reference(images, draws, padding))
    if flip:  # both branches exercised
        assert 0 < int(draws[:, 2].sum()) < 64


def test_draws_cover_torchvision_random_crop_range():
    draws = draw_crop_flip(5000, 4, True, torch.Generator().manual_seed(0))
    assert draws[:, :2].min() == 0 and draws[:, :2].max() == 8
    assert set(draws[:, 2].tolist()) == {0, 1}
    again = draw_crop_flip(5000, 4, True, torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


def test_non_square_and_single_channel_images():
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (5, 1, 28, 20), dtype=torch.uint8, generator=gen)
    draws = draw_crop_flip(5, 3, True, gen)
    assert torch.equal(crop_flip(images, draws, 3), _reference(images, draws, 3))


def _data(mean=None, std=None):
    x = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    return ClassificationData(x, torch.zeros(10), x, torch.zeros(10), "t", mean=mean, std=std)


def test_pipeline_normalises_per_channel_in_channels_last():
    data = _data(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    pipe = InputPipeline(data, TABLES["table2"].protocol("paper"))
    x = pipe(data.test_x)
    assert x.is_contiguous(memory_format=torch.channels_last)
    want = (data.test_x.float() / 255 - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / (
        torch.tensor([0.5, 0.25, 1.0]).view(1, 3, 1, 1)
    )
    torch.testing.assert_close(x, want)
    assert pipe.draw(10, torch.Generator()) is not None


def test_pipeline_without_stats_or_augmentation_is_the_plain_scaling():
    data = _data()
    pipe = InputPipeline(
        data, ClassificationProtocol(dataset="x", epochs=1, batch_size=1), channels_last=False
    )
    assert pipe.draw(10, torch.Generator()) is None
    assert torch.equal(pipe.train(data.train_x, None), data.train_x.float() / 255)
