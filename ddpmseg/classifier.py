"""Pixel classifiers (docs/method.md §4): the MLP, its initialisation, the stopping rule and member training."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import DdpmsegError
from .files import save_torch
from .progress import progress_bar
from .sampler import PixelSampler, member_seed, view_order_seed


@dataclass(frozen=True)
class TrainSettings:
    """Settings of member training; the defaults are the paper's."""

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    dropout: float = 0.0
    batch_size: int = 64
    max_epochs: int = 100
    epochs_before_stopping: int = 4
    patience: int = 50

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise DdpmsegError(f"optimizer '{self.optimizer}' is not one of adam, adamw")


def hidden_sizes(number_class: int) -> tuple[int, int]:
    return (128, 32) if number_class < 30 else (256, 128)


def build_classifier(in_features: int, number_class: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear, ReLU, BatchNorm1d, [Dropout], Linear, ReLU, BatchNorm1d, [Dropout], Linear.

    Dropout follows each ReLU after its BatchNorm, not between the two: there, BatchNorm's running
    statistics are gathered on dropout-scaled activations and no longer fit at eval time (the
    "variance shift"); on the demo, p = 0.4 between them gave 25.8 % mIoU, after BatchNorm 62.3 %.
    """
    first, second = hidden_sizes(number_class)
    layers: list[nn.Module] = []
    width = in_features
    for hidden in (first, second):
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.BatchNorm1d(hidden)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, number_class))
    model = nn.Sequential(*layers)
    init_weights(model)
    return model


def init_weights(model: nn.Module, std: float = 0.02) -> None:
    """Linear weights N(0, std), biases 0; BatchNorm keeps torch's defaults (as the reference)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, std)
            nn.init.zeros_(module.bias)


class StoppingRule:
    """The paper's early stopping.

    From epoch index ``epochs_before_stopping`` on (paper: 4, i.e. epoch > 3), after every step: a loss
    below the best seen since the rule became active resets a counter, any other loss increments it;
    training stops when the counter exceeds ``patience``. Losses of earlier epochs are not tracked
    (the reference starts its best loss at 1e7 and updates it only inside the rule).
    """

    def __init__(self, epochs_before_stopping: int = 4, patience: int = 50):
        self.epochs_before_stopping = epochs_before_stopping
        self.patience = patience
        self.best = math.inf
        self.count = 0

    def update(self, epoch: int, loss: float) -> bool:
        """Record the loss of a step of ``epoch``; True when training must stop now."""
        if epoch < self.epochs_before_stopping:
            return False
        if loss < self.best:
            self.best = loss
            self.count = 0
        else:
            self.count += 1
        return self.count > self.patience


def make_optimizer(parameters, settings: TrainSettings) -> torch.optim.Optimizer:
    """Adam or AdamW; the fused (single-kernel) implementation where this torch has it.

    Fusing matters for the stacked weights of :func:`train_ensemble` (10 members: 80 -> 10 ms per step
    on CPU); separate members use it too, so both run the same arithmetic.
    """
    kind = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    parameters = list(parameters)
    try:
        return kind(parameters, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # torch without a fused kernel for this device
        return kind(parameters, lr=settings.lr, weight_decay=settings.weight_decay)


class _Recorder:
    """Per-member bookkeeping shared by separate and fused training: stopping rule, losses, log."""

    def __init__(self, seed: int, member: int, settings: TrainSettings, pixels: int, started: float):
        self.seed, self.member, self.settings, self.pixels, self.started = seed, member, settings, pixels, started
        self.rule = StoppingRule(settings.epochs_before_stopping, settings.patience)
        self.steps, self.epoch_losses, self.stopped = 0, [], False
        self.loss, self.first_step_s = math.nan, None
        self._total, self._count = 0.0, 0

    def step(self, epoch: int, loss: float) -> bool:
        """Record a step's loss; True when the stopping rule fires."""
        if self.first_step_s is None:
            self.first_step_s = time.perf_counter() - self.started
        self.loss = loss
        self.steps += 1
        self._total, self._count = self._total + loss, self._count + 1
        self.stopped = self.rule.update(epoch, loss)
        return self.stopped

    def end_epoch(self) -> None:
        self.epoch_losses.append(self._total / max(self._count, 1))
        self._total, self._count = 0.0, 0

    def state(self) -> dict[str, Any]:
        """What a resumed run needs to continue this record exactly (see :func:`train_member`)."""
        return {
            "steps": self.steps,
            "epoch_losses": list(self.epoch_losses),
            "stopped": self.stopped,
            "loss": self.loss,
            "first_step_s": self.first_step_s,
            "best": self.rule.best,
            "count": self.rule.count,
            "elapsed_s": time.perf_counter() - self.started,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.steps, self.epoch_losses, self.stopped = state["steps"], list(state["epoch_losses"]), state["stopped"]
        self.loss, self.first_step_s = state["loss"], state["first_step_s"]
        self.rule.best, self.rule.count = state["best"], state["count"]
        self.started = time.perf_counter() - state["elapsed_s"]

    def log(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "member": self.member,
            "member_seed": member_seed(self.seed, self.member),
            "settings": asdict(self.settings),
            "training_pixels": self.pixels,
            "steps": self.steps,
            "epochs": len(self.epoch_losses),
            "stopped_early": self.stopped,
            "final_loss": self.loss,
            "epoch_losses": self.epoch_losses,
            "time_to_first_step_s": self.first_step_s,
            "wall_time_s": time.perf_counter() - self.started,
        }


def _init_member(feature_dim: int, number_class: int, settings: TrainSettings, seed: int, member: int) -> nn.Sequential:
    """A member's initial model: torch's global RNG seeded with the member's seed, which then draws
    its dropout masks too."""
    torch.manual_seed(member_seed(seed, member))
    return build_classifier(feature_dim, number_class, settings.dropout)


def _load_progress(path: str | Path | None, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """Saved training state, if ``path`` holds one for exactly this training (else it is discarded)."""
    if path is None or not Path(path).is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a file from an older version, or damaged: start afresh
        state = None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        Path(path).unlink()
        return None
    return state


def _fingerprint(sampler: PixelSampler, number_class: int, settings: TrainSettings, seed: int,
                 members: Sequence[int], steps_per_epoch: int | None) -> dict[str, Any]:
    return {
        "settings": asdict(settings), "seed": seed, "members": list(members),
        "number_class": number_class, "pixels": len(sampler), "views": sampler.views,
        "feature_dim": sampler.feature_dim, "buffer_views": sampler.buffer_views, "steps_per_epoch": steps_per_epoch,
    }


def train_member(
    sampler: PixelSampler,
    number_class: int,
    settings: TrainSettings,
    seed: int,
    member: int,
    steps_per_epoch: int | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
) -> tuple[nn.Sequential, dict[str, Any]]:
    """Train ensemble member ``member`` of run ``seed``; return the model (eval mode) and its training log.

    This is :func:`train_ensemble` of the one member: the same batched code with M = 1, whose
    first-layer products are faster on CPU than ``nn.Linear``'s (see :class:`_FirstLayer`).
    With ``checkpoint``, the whole training state (weights, optimizer, stopping rule, losses, random
    generators) is saved there after every epoch, and a run that finds it continues from it: a killed
    member loses at most one epoch and ends exactly where an uninterrupted run would.
    """
    return train_ensemble(sampler, number_class, settings, seed, [member], steps_per_epoch, progress, checkpoint)[0]


class _FirstLayer(torch.autograd.Function):
    """``baddbmm(bias, features, weight)`` of features that need no gradient.

    Its backward writes the weight gradient member by member straight into ``weight.grad``
    (overwriting it: one backward per step) instead of returning it. The first layer holds almost all
    of an ensemble's arithmetic and memory traffic, and on CPU the default path costs twice the
    products themselves: a batched (M, D, B) x (M, B, H) product runs at half the speed of M single
    ones (23.7 vs 13.1 ms for 10 members at D = 8448), and a fresh (M, D, H) gradient each step is a
    new mapping of 43 MB to page in, then added into ``weight.grad`` after it was zero-filled.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(features)
        ctx.weight = weight
        return torch.baddbmm(bias, features, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        (features,) = ctx.saved_tensors
        weight = ctx.weight
        if weight.grad is None:
            weight.grad = torch.empty_like(weight)
        for m in range(grad.shape[0]):
            torch.mm(features[m].T, grad[m], out=weight.grad[m])
        return None, None, grad.sum(dim=1, keepdim=True)


class StackedClassifiers(nn.Module):
    """M pixel classifiers as one batched computation: stacked weights, batched matrix products.

    Every parameter and buffer has the members on its first axis, so members can be dropped (when their
    stopping rule fires) by indexing. Dropout masks of member m are drawn from its own saved copy of
    torch's global RNG state, in the order a separately trained member draws them.
    """

    def __init__(self, members: Sequence[nn.Sequential], dropout: float):
        super().__init__()
        linears = [[m for m in member if isinstance(m, nn.Linear)] for member in members]
        norms = [[m for m in member if isinstance(m, nn.BatchNorm1d)] for member in members]
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.stack([ls[k].weight.detach().T for ls in linears]).contiguous()) for k in range(3)]
        )
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.stack([ls[k].bias.detach()[None] for ls in linears])) for k in range(3)]
        )
        self.norm_weights = nn.ParameterList([nn.Parameter(torch.stack([ns[k].weight.detach() for ns in norms])) for k in range(2)])
        self.norm_biases = nn.ParameterList([nn.Parameter(torch.stack([ns[k].bias.detach() for ns in norms])) for k in range(2)])
        for k in range(2):
            self.register_buffer(f"running_mean{k}", torch.stack([ns[k].running_mean for ns in norms]).clone())
            self.register_buffer(f"running_var{k}", torch.stack([ns[k].running_var for ns in norms]).clone())
        self.dropout = dropout
        self.rng_states: list[torch.Tensor] = []

    def _dropout(self, hidden: torch.Tensor) -> torch.Tensor:
        """Member-wise dropout of (M, B, H), each member from its own RNG state."""
        if self.dropout == 0 or not self.training:
            return hidden
        outputs = []
        for m in range(hidden.shape[0]):
            torch.set_rng_state(self.rng_states[m])
            outputs.append(nn.functional.dropout(hidden[m].contiguous(), self.dropout, training=True))
            self.rng_states[m] = torch.get_rng_state()
        return torch.stack(outputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(M, B, D) features to (M, B, K) logits."""
        hidden = features
        for k in range(2):
            if k == 0 and not features.requires_grad:
                hidden = torch.relu(_FirstLayer.apply(hidden, self.weights[0], self.biases[0]))
            else:
                hidden = torch.relu(torch.baddbmm(self.biases[k], hidden, self.weights[k]))
            members, batch, width = hidden.shape
            flat = hidden.transpose(0, 1).reshape(batch, members * width)
            flat = nn.functional.batch_norm(
                flat,
                getattr(self, f"running_mean{k}").view(-1),
                getattr(self, f"running_var{k}").view(-1),
                self.norm_weights[k].reshape(-1),
                self.norm_biases[k].reshape(-1),
                training=self.training,
            )
            hidden = self._dropout(flat.reshape(batch, members, width).transpose(0, 1))
        return torch.baddbmm(self.biases[2], hidden, self.weights[2])

    def zero_grad_but_first(self) -> None:
        """Zero every gradient but the first layer's weight gradient, which the next backward overwrites."""
        for param in self.parameters():
            if param is not self.weights[0] and param.grad is not None:
                param.grad.zero_()

    def keep(self, members: Sequence[int], optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Keep only ``members`` (indices along the member axis); returns an optimizer with their state."""
        index = torch.as_tensor(list(members), dtype=torch.long)
        old_state = {id(p): optimizer.state.get(p, {}) for p in self.parameters()}
        replacements = []
        for plist in (self.weights, self.biases, self.norm_weights, self.norm_biases):
            for k, param in enumerate(plist):
                new = nn.Parameter(param.detach()[index].clone())
                replacements.append((id(param), new))
                plist[k] = new
        for name, buffer in list(self.named_buffers()):
            setattr(self, name, buffer[index].clone())
        self.rng_states = [self.rng_states[m] for m in members]
        new_optimizer = type(optimizer)(self.parameters(), **optimizer.defaults)
        for old_id, new in replacements:
            state = old_state[old_id]
            new_optimizer.state[new] = {
                key: value if key == "step" else value[index].clone() for key, value in state.items()
            }
        return new_optimizer

    def member(self, m: int, number_class: int, steps: int) -> nn.Sequential:
        """Member ``m`` as a plain classifier (eval mode)."""
        feature_dim = self.weights[0].shape[1]
        model = build_classifier(feature_dim, number_class, self.dropout)
        linears = [layer for layer in model if isinstance(layer, nn.Linear)]
        norms = [layer for layer in model if isinstance(layer, nn.BatchNorm1d)]
        with torch.no_grad():
            for k, linear in enumerate(linears):
                linear.weight.copy_(self.weights[k][m].T)
                linear.bias.copy_(self.biases[k][m, 0])
            for k, norm in enumerate(norms):
                norm.weight.copy_(self.norm_weights[k][m])
                norm.bias.copy_(self.norm_biases[k][m])
                norm.running_mean.copy_(getattr(self, f"running_mean{k}")[m])
                norm.running_var.copy_(getattr(self, f"running_var{k}")[m])
                norm.num_batches_tracked.fill_(steps)
        return model.eval()


def _members_name(members: Sequence[int]) -> str:
    return f"member {members[0]}" if len(members) == 1 else f"{len(members)} members"


def train_ensemble(
    sampler: PixelSampler,
    number_class: int,
    settings: TrainSettings,
    seed: int,
    members: Sequence[int],
    steps_per_epoch: int | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
) -> list[tuple[nn.Sequential, dict[str, Any]]]:
    """Train several members of run ``seed`` together in one batched computation.

    Each member keeps its own initialisation, minibatch order, dropout masks and stopping rule, so it
    ends where a plain ``nn.Sequential`` trained alone with Adam on the same batches would (up to float
    rounding of the batched products). A member whose rule fires leaves the batch. Returns (model, log)
    per member, in the order of ``members``. With ``checkpoint``, the whole state is saved there after
    every epoch and resumed from it (see :func:`train_member`).
    """
    started = time.perf_counter()
    members = list(members)
    models, rng_states = [], []
    for member in members:
        models.append(_init_member(sampler.feature_dim, number_class, settings, seed, member))
        rng_states.append(torch.get_rng_state())
    views = torch.Generator().manual_seed(view_order_seed(seed))
    generators = [torch.Generator().manual_seed(member_seed(seed, m)) for m in members]
    records = [_Recorder(seed, m, settings, len(sampler), started) for m in members]
    live = list(range(len(members)))  # positions (in ``members``) of the members still training
    finished: dict[int, nn.Sequential] = {}
    fingerprint = None if checkpoint is None else _fingerprint(
        sampler, number_class, settings, seed, members, steps_per_epoch
    )
    first_epoch = 0
    state = _load_progress(checkpoint, fingerprint)
    if state is not None:
        live = list(state["live"])
        for i, member_state in state["finished"].items():
            finished[int(i)] = build_classifier(sampler.feature_dim, number_class, settings.dropout)
            finished[int(i)].load_state_dict(member_state)
            finished[int(i)].eval()
    stacked = StackedClassifiers([models[i] for i in live], settings.dropout)
    stacked.rng_states = [rng_states[i] for i in live]
    optimizer = make_optimizer(stacked.parameters(), settings)
    if state is not None:
        stacked.load_state_dict(state["stacked"])
        stacked.rng_states = list(state["rng_states"])
        optimizer.load_state_dict(state["optimizer"])
        for record, record_state in zip(records, state["records"]):
            record.restore(record_state)
        views.set_state(state["views"])
        for generator, generator_state in zip(generators, state["generators"]):
            generator.set_state(generator_state)
        first_epoch = state["epoch"]
        print(f"{_members_name(members)}: resumed after epoch {first_epoch} from {checkpoint}")
    stacked.train()
    bar = progress_bar(total=settings.max_epochs, initial=first_epoch, desc=_members_name(members), unit="epoch", disable=not progress)
    for epoch in range(first_epoch, settings.max_epochs):
        at_start = list(live)  # the sampler draws for these until the epoch ends
        stream = sampler.ensemble_epoch(views, [generators[i] for i in at_start], settings.batch_size, steps_per_epoch)
        for features, labels in stream:
            if len(live) < len(at_start):  # members that stopped this epoch: their batches go unused
                rows = torch.as_tensor([at_start.index(i) for i in live])
                features, labels = features[rows], labels[rows]
            logits = stacked(features)
            losses = nn.functional.cross_entropy(
                logits.reshape(-1, number_class), labels.reshape(-1), reduction="none"
            ).view(len(live), -1).mean(dim=1)
            stacked.zero_grad_but_first()
            losses.sum().backward()
            optimizer.step()
            stopping = [slot for slot, loss in enumerate(losses.tolist()) if records[live[slot]].step(epoch, loss)]
            if stopping:
                for slot in stopping:
                    finished[live[slot]] = stacked.member(slot, number_class, records[live[slot]].steps)
                    records[live[slot]].end_epoch()
                remaining = [slot for slot in range(len(live)) if slot not in stopping]
                live = [live[slot] for slot in remaining]
                if not live:
                    stream.close()
                    break
                optimizer = stacked.keep(remaining, optimizer)
        for i in live:
            records[i].end_epoch()
        bar.update(1)
        epoch_loss = sum(records[i].epoch_losses[-1] for i in at_start) / len(at_start)
        bar.set_postfix(training=len(live), loss=f"{epoch_loss:.4f}", refresh=False)
        if not live:
            break
        if checkpoint is not None:
            save_torch(checkpoint, {
                "fingerprint": fingerprint, "epoch": epoch + 1, "live": live,
                "finished": {str(i): model.state_dict() for i, model in finished.items()},
                "stacked": stacked.state_dict(), "rng_states": stacked.rng_states, "optimizer": optimizer.state_dict(),
                "records": [record.state() for record in records], "views": views.get_state(),
                "generators": [generator.get_state() for generator in generators],
            })
    bar.close()
    for slot, i in enumerate(live):
        finished[i] = stacked.member(slot, number_class, records[i].steps)
    results = []
    for i in range(len(members)):
        log = records[i].log()
        log["resumed_after_epoch"] = first_epoch if state is not None else None
        results.append((finished[i], log))
    return results


def save_member(path: str | Path, model: nn.Sequential, in_features: int, number_class: int, dropout: float) -> None:
    save_torch(
        path,
        {"state_dict": model.state_dict(), "in_features": in_features, "number_class": number_class, "dropout": dropout},
    )


def load_member(path: str | Path) -> nn.Sequential:
    """A trained member in eval mode (loaded with ``weights_only=True``)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = build_classifier(saved["in_features"], saved["number_class"], saved["dropout"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def load_ensemble(paths: Sequence[str | Path]) -> list[nn.Sequential]:
    return [load_member(p) for p in paths]
