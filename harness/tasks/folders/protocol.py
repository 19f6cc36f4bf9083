"""The image-folder classification task's name and protocol: light, so tables import them without the engine."""

from __future__ import annotations

NAME = "folders"
