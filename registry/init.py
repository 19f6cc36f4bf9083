"""Weight initialisation shared by the paper's networks."""

from __future__ import annotations

from torch import nn

_XAVIER_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def xavier_init_(model: nn.Module) -> nn.Module:
    """Xavier-uniform weights and zero biases, as the paper states for its convs.

    The paper's TensorFlow layers default to Glorot-uniform for dense layers too,
    so fully connected layers get the same treatment.
    """
    for module in model.modules():
        if isinstance(module, _XAVIER_LAYERS):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model
