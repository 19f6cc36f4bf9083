"""Test images are read correctly or refused with a reason."""

import os

import numpy as np
from PIL import Image

from harness.data.images import iter_test_images, read_rgb
from harness.data.imaging import gaussian_noise


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(8, 0).repeat(2, 1)
    Image.fromarray(values).save(tmp_path / "deep.png")
    image = read_rgb(tmp_path / "deep.png")
    assert image.pixels[:, 0, ::2].tolist() == [[0, 1, 128, 255]] * 3
    assert "16-bit greyscale scaled to 8 bits" in image.note


def test_alpha_and_palette_are_noted(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "p.png")
    alpha, palette = read_rgb(tmp_path / "a.png"), read_rgb(tmp_path / "p.png")
    assert alpha.note == "a.png: alpha dropped" and alpha.pixels[0, 0, 0] == 200
    assert palette.note == "p.png: palette converted to RGB"
    assert read_rgb(tmp_path / "a.png").pixels.shape == (3, 8, 8)


def test_same_name_in_two_folders_are_two_images(tmp_path):
    for sub, level in (("a", 10), ("b", 200)):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.full((8, 8, 3), level, np.uint8)).save(tmp_path / sub / "img.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a" / "img.jpg")
    count, images = iter_test_images("test_dir", tmp_path, tmp_path)
    ids = [im.id for im in images]
    assert count == 3 and sorted(ids) == ["a/img.jpg", "a/img.png", "b/img"]
    first, second = (gaussian_noise(i, 25, 0, (3, 8, 8)) for i in ids[1:])
    assert not first.equal(second)  # different noise for different images


def test_undecodable_file_name_is_read(tmp_path):
    name = os.fsdecode(b"img\xff.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name)
    (image,) = iter_test_images("test_dir", tmp_path, tmp_path)[1]
    assert image.id == "img\\xff"
    image.id.encode()  # prints and hashes
    assert gaussian_noise(image.id, 25, 0, (3, 8, 8)).shape == (3, 8, 8)
