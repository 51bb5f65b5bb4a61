"""Factories for the ``--torch MODULE:FACTORY`` error tests (imported by the CLI, not pytest)."""

from __future__ import annotations

import torch
from torch import nn


def tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 2))


def raises() -> nn.Module:
    raise RuntimeError("no weights file")


def not_a_module():
    return [1, 2, 3]


NOT_CALLABLE = 42
BUILT = nn.Sequential(nn.Linear(8, 4), nn.ReLU())  # a model built at import time


class NeedsSixChannels(nn.Module):
    """Its forward fails on a 3-channel input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(6, 8, 3)

    def forward(self, x):
        return torch.relu(self.conv(x))
