"""The EMA of the weights (ddpmseg.diffusion.training.ema) against a hand computation."""

from __future__ import annotations

import pytest
import torch

from ddpmseg.diffusion.training.ema import copy_parameters, ema_state_dict, update_ema


def test_update_ema_matches_a_hand_computation():
    ema = [torch.tensor([1.0, -2.0]), torch.tensor([[4.0]])]
    update_ema(ema, [torch.tensor([3.0, 2.0]), torch.tensor([[0.0]])], rate=0.75)
    # 0.75 * 1 + 0.25 * 3 = 1.5; 0.75 * -2 + 0.25 * 2 = -1; 0.75 * 4 + 0.25 * 0 = 3
    assert ema[0].tolist() == [1.5, -1.0] and ema[1].tolist() == [[3.0]]
    update_ema(ema, [torch.tensor([1.5, 3.0]), torch.tensor([[7.0]])], rate=0.5)
    assert ema[0].tolist() == [1.5, 1.0] and ema[1].tolist() == [[5.0]]


def test_rate_one_keeps_the_average_and_rate_zero_copies_the_weights():
    ema = [torch.tensor([2.0])]
    update_ema(ema, [torch.tensor([10.0])], rate=1.0)
    assert ema[0].item() == 2.0
    update_ema(ema, [torch.tensor([10.0])], rate=0.0)
    assert ema[0].item() == 10.0


def test_copies_are_independent_of_the_model_and_the_state_dict_keeps_buffers():
    model = torch.nn.BatchNorm1d(2)  # parameters weight, bias; buffers running_mean, running_var, ...
    ema = copy_parameters(model)
    with torch.no_grad():
        model.weight.fill_(5.0)
    assert ema[0].tolist() == [1.0, 1.0]
    model.running_mean.fill_(0.25)
    state = ema_state_dict(model, [torch.tensor([7.0, 8.0]), torch.tensor([9.0, 10.0])])
    assert state["weight"].tolist() == [7.0, 8.0] and state["bias"].tolist() == [9.0, 10.0]
    assert state["running_mean"].tolist() == [0.25, 0.25]
    assert set(state) == set(model.state_dict())
    with pytest.raises(ValueError, match="1 EMA tensors for a model of 2 parameters"):
        ema_state_dict(model, [torch.zeros(2)])
