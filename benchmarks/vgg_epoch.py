"""A VGG-16 training epoch at batch 250 as images/s: the harness's path vs a stock loop.

``vgg16.baseline`` with Table 2's paper protocol (SGD, momentum 0.9, lr 0.1, weight
decay 5e-4, random crop after 4 pixels of zero padding, horizontal flip, CIFAR-10's
normalisation) on generated images written in CIFAR-10's on-disk layout and read back
by torchvision's reader; trained the harness's way (uint8 images on the device, batches
augmented there) and by a stock loop (DataLoader with ``torchvision.transforms.v2`` per
image), in interleaved rounds. See :mod:`harness.tools.throughput` for what each side
does and how it is timed. The epoch (50,000 images) is extrapolated from the images/s.
Writes ``reports/bench/vgg_epoch.json``.

    python benchmarks/vgg_epoch.py --device cpu --quick
    python benchmarks/vgg_epoch.py --device cuda --amp bf16 --rounds 5 --steps 20
"""

import sys
from pathlib import Path

from harness.tools.throughput import main

if __name__ == "__main__":
    out = [] if "--out" in sys.argv else ["--out", str(Path("reports/bench/vgg_epoch.json"))]
    sys.exit(main([*sys.argv[1:], *out], workload="vgg16"))
