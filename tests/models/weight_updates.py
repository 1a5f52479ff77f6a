"""A check shared by the layers that keep a laid-out copy of their weight (MKL packs, oneDNN's layout)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def assert_forwards_follow_weight_updates(layer: nn.Linear) -> None:
    """No-grad forwards of 5 rows equal ``F.linear`` with the current weight after an optimizer step
    and after a ``load_state_dict`` (both bump the weight's version counter), and differ from before."""
    x = torch.randn(5, layer.in_features)
    opt = torch.optim.AdamW(layer.parameters(), lr=0.1)
    with torch.no_grad():
        before = layer(x)
    layer(torch.randn(5, layer.in_features)).sum().backward()
    opt.step()  # in place: the version counter moves
    with torch.no_grad():
        after = layer(x)
        assert float((after - F.linear(x, layer.weight, layer.bias)).norm() / after.norm()) < 1e-6
        assert not torch.allclose(after, before)
        layer.load_state_dict(
            {
                "weight": torch.randn(layer.out_features, layer.in_features),
                "bias": torch.zeros(layer.out_features),
            }
        )
        expected = F.linear(x, layer.weight, layer.bias)
        assert float((layer(x) - expected).norm() / expected.norm()) < 1e-6
