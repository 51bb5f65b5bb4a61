"""One built-in network: its name, default input, layer-language text and description."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ZooEntry:
    name: str
    input: str  # C x H x W
    spec: str
    description: str
    family: str = "classic"  # how `cnncalc zoo` groups the networks
