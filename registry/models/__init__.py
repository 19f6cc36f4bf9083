"""Architectures of the paper; importing this package registers them and their variants."""

from . import denoiser, mnist, resnet, vgg  # noqa: F401
