"""A user's own reduction and variant, registered from this file without editing the package.

Name it in a study (``plugins = ["my_reductions"]``, looked for beside the study file) or
on the command line (``--plugins examples/plugins/my_reductions.py``); the harness says it
imports it before it does. Importing it registers:

* reduction kind ``channel_avg``: the mean over groups of ``stride`` adjacent channels, the
  average-pooling counterpart of spatial feature pooling (``fp_max``). It traces to
  ``aten::mean``, which the harness counts by default (n per mean of n); a kind whose op has
  no default would pass ``flops={"aten::op": handle}`` to ``register_reduction``.
* variant ``mnist.channel_avg_s2``: Table 1's network with it at stride 2.
"""

from __future__ import annotations

from torch import Tensor, nn

from registry import Reduction, register_reduction, register_variant


class ChannelAverage(nn.Module):
    """(N, C, H, W) -> (N, C / stride, H, W): output map j averages maps j*stride .. j*stride+stride-1."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return x.unflatten(1, (x.shape[1] // self.stride, self.stride)).mean(dim=2)


@register_reduction("channel_avg")
def channel_avg(channels: int, stride: int) -> nn.Module:
    """Channel averaging: the mean over groups of ``stride`` adjacent channels."""
    return ChannelAverage(stride)


register_variant(
    "mnist.channel_avg_s2",
    "mnist",
    reduction=Reduction("channel_avg", 2),
    description="Channel averaging over pairs of maps after conv2 (a user's plugin)",
)
