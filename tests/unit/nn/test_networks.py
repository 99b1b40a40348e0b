from __future__ import annotations

import pytest
import torch
from torch import nn

from samsvae.nn import networks


@pytest.mark.parametrize("n_threads", [1, 2])
def test_wide_linear_gives_the_values_and_gradients_of_the_layer_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch, n_threads: int
) -> None:
    monkeypatch.setattr(networks, "blocks_win", lambda weight: True)  # whatever the shape
    torch.manual_seed(0)
    layer = nn.Linear(40, 301)
    x = torch.randn(3, 700, 40)  # 2,100 rows: four blocks of 512 and a ragged one of 52
    weights = torch.randn(3, 700, 301)
    threads = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        results = []
        for forward in (networks.wide_linear, lambda h, lin: lin(h)):
            layer.zero_grad(set_to_none=True)
            h = x.clone().requires_grad_()
            out = forward(h, layer)
            (out * weights).sum().backward()
            results.append([out.detach(), h.grad, layer.weight.grad, layer.bias.grad])
    finally:
        torch.set_num_threads(threads)
    assert networks.ROW_BLOCK < 2100
    for blocked, plain in zip(*results, strict=True):
        torch.testing.assert_close(blocked, plain, rtol=0, atol=0)


def test_the_blocks_are_chosen_by_the_number_of_outputs_alone() -> None:
    assert networks.blocks_win(torch.empty(1187, 400))
    assert networks.blocks_win(torch.empty(networks.MAX_BLOCKED_OUTPUTS, 8))
    assert not networks.blocks_win(torch.empty(5000, 400))
