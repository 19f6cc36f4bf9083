"""Architectures of the paper; importing this package registers them and their variants."""

from . import classical, denoiser, dncnn, mnist, rednet, resnet, vgg  # noqa: F401
