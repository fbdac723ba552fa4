"""The pixel MLP (docs/method.md §4): architecture by number of classes, dropout placement, init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddpmseg.classifier.mlp import build_classifier, load_member, save_member
from ddpmseg.base.errors import DdpmsegError


def test_architecture_by_number_of_classes() -> None:
    small = build_classifier(100, 21)
    kinds = [type(m) for m in small]
    assert kinds == [nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Linear]
    assert [m.out_features for m in small if isinstance(m, nn.Linear)] == [128, 32, 21]
    large = build_classifier(100, 34)
    assert [m.out_features for m in large if isinstance(m, nn.Linear)] == [256, 128, 34]


def test_dropout_follows_each_relu_after_its_batchnorm() -> None:
    model = build_classifier(10, 5, dropout=0.4)
    kinds = [type(m) for m in model]
    assert kinds == [nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout, nn.Linear]
    assert all(m.p == 0.4 for m in model if isinstance(m, nn.Dropout))


def test_init_normal_002_and_zero_bias() -> None:
    torch.manual_seed(0)
    model = build_classifier(2000, 21)
    first = model[0]
    assert abs(first.weight.std().item() - 0.02) < 0.001
    assert abs(first.weight.mean().item()) < 0.001
    assert torch.all(first.bias == 0)


def test_a_saved_member_loads_in_eval_mode_with_its_architecture_and_weights(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_classifier(7, 3, dropout=0.4)
    model(torch.randn(16, 7))  # a training step's forward pass moves the BatchNorm running statistics
    save_member(tmp_path / "m.pt", model, in_features=7, number_class=3, dropout=0.4)
    loaded = load_member(tmp_path / "m.pt")
    assert [type(m) for m in loaded] == [type(m) for m in model] and not loaded.training
    points = torch.randn(5, 7)
    with torch.no_grad():
        assert torch.equal(loaded(points), model.eval()(points))  # dropout off, running statistics kept


class _RunsCode:
    """An object whose unpickling would call a function: what weights_only refuses."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_member_file_that_holds_pickled_objects_is_one_line_never_loaded(tmp_path, capsys) -> None:
    path = tmp_path / "member0.pt"
    torch.save({"state_dict": _RunsCode(), "in_features": 3, "number_class": 2, "dropout": 0.0}, path)
    with pytest.raises(DdpmsegError) as info:
        load_member(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a plain weights file") and "\n" not in message
    assert "weights_only=False" not in message and "this must never run" not in capsys.readouterr().out
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(DdpmsegError, match=r"member0\.pt: not a ddpmseg member's weights file"):
        load_member(path)
