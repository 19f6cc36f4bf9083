"""RED-Net-30 (Mao et al., 2016), the network of the paper's Table 8.

15 convolutions then 15 deconvolutions (transposed convolutions), 3x3, stride 1,
ReLU after each but the last. Every second conv's output is added to the output of
its mirror image in the deconvolution half (a symmetric skip), then ReLU.

Width: 128 maps in every layer, as the authors released it. Their test code
(github.com/ved27/RED-net, a copy of bitbucket.org/chhshen/image-denoising; files
``model/REDNet_ch1.prototxt`` and ``REDNet_ch3.prototxt``) declares 15 Convolution
and 15 Deconvolution layers with ``num_output: 128, kernel_size: 3, stride: 1, pad: 1``
(the last deconvolution 1 or 3), an Eltwise sum joining conv 14 with deconv 1, conv 12
with deconv 3, ... conv 2 with deconv 13, and ``utils/netforward.m`` adds the
network's output to the input image. Colour: 4,139,395 parameters. Several
reimplementations use 64 maps (1,037,507 parameters); that network is kept as the
extra variant ``rednet.red30_64``.

CHOICES (the released files hold no training code): the network's output is
subtracted rather than added (estimate = input - output, so the body predicts the
noise like every other network here; the same function up to the sign of the last
layer); Xavier-uniform weights. The authors' denoising models are grey
(``REDNet_ch1``); this colour network has their ``REDNet_ch3`` layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._registry import PaperRow, register_arch, register_variant

if TYPE_CHECKING:
    from ..nets.rednet import REDNet

FEATURES = 128  # the authors' released RED-Net


@register_arch("rednet")
def rednet(**kwargs: object) -> REDNet:
    from ..nets.rednet import REDNet

    return REDNet(**kwargs)  # type: ignore[arg-type]


# ``features`` is spelled out so that records of the 64-map network, which
# ``rednet.red30`` named before, hash differently
register_variant(
    "rednet.red30", "rednet", layers=15, features=FEATURES,
    description="RED-Net-30, 15 conv + 15 deconv, 128 maps as released (trained here like our denoiser)",
    paper=(PaperRow.psnr("table8", "RED-Net", {10: "33.38", 30: "27.88", 50: "25.69"}),),
)  # fmt: skip
register_variant(
    "rednet.red30_64", "rednet", layers=15, features=64,
    description="RED-Net-30 at 64 maps, as some reimplementations build it",
)  # fmt: skip
