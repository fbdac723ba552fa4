"""A whole DDPM training run (ddpmseg.diffusion.training.run): fine-tuning start, EMA, microbatches, resume
after SIGKILL, a stale state started afresh, DDP with gloo and 2 processes (on one node or two) against 1,
errors before training, the sampler paths."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.diffusion.model import build_model_and_diffusion, load_ddpm
from ddpmseg.diffusion.training.draws import step_draws
from ddpmseg.diffusion.training.launch import Rendezvous, launch_command, write_arguments
from ddpmseg.diffusion.training.run import train_ddpm
from ddpmseg.diffusion.training.state import read_state

from .conftest import FLAGS, SETTINGS, assert_states_equal, outputs, save_init, subprocess_env, train


def test_fine_tuning_starts_from_the_init_weights_and_so_does_the_ema(tmp_path, images):
    init = save_init(tmp_path / "init.pt", seed=123)
    zero = train(tmp_path / "zero", images, replace(SETTINGS, iterations=0), init=tmp_path / "init.pt")
    assert_states_equal(torch.load(zero["checkpoint"], weights_only=True), init)
    assert_states_equal(read_state(zero["state"])["model"], init)

    one = train(tmp_path / "one", images, replace(SETTINGS, iterations=1, ema_rate=0.5), init=tmp_path / "init.pt")
    model = read_state(one["state"])["model"]
    ema = torch.load(one["checkpoint"], weights_only=True)
    moved = [key for key in init if not torch.equal(model[key], init[key])]
    assert moved, "one AdamW step must change the weights"
    for key in init:  # the step moved the weights by at most ~lr from the init ones
        assert (model[key] - init[key]).abs().max() <= 1.5 * SETTINGS.lr, key
        torch.testing.assert_close(ema[key], 0.5 * init[key] + 0.5 * model[key], atol=1e-7, rtol=0, msg=key)


def test_without_init_the_weights_are_the_seeded_random_ones(tmp_path, images):
    paths = train(tmp_path / "fresh", images, replace(SETTINGS, iterations=0))
    torch.manual_seed(SETTINGS.seed)
    model, _ = build_model_and_diffusion(FLAGS)
    assert_states_equal(torch.load(paths["checkpoint"], weights_only=True), model.state_dict())


def test_the_checkpoint_is_the_ema_of_the_weights_step_by_step(tmp_path, images):
    """Two iterations at rate 0.9: ema2 = 0.9 * (0.9 * w0 + 0.1 * w1) + 0.1 * w2, with w1, w2 read from the
    states saved after each iteration."""
    w0 = save_init(tmp_path / "init.pt", seed=5)
    first = train(tmp_path / "a", images, replace(SETTINGS, iterations=1), init=tmp_path / "init.pt")
    w1 = read_state(first["state"])["model"]
    second = train(tmp_path / "b", images, replace(SETTINGS, iterations=2, save_every=1), init=tmp_path / "init.pt")
    w2 = read_state(second["state"])["model"]
    ema = torch.load(second["checkpoint"], weights_only=True)
    for key in w0:
        expected = 0.9 * (0.9 * w0[key] + 0.1 * w1[key]) + 0.1 * w2[key]
        torch.testing.assert_close(ema[key], expected, atol=1e-6, rtol=0, msg=key)


def test_the_gradient_is_the_batch_mean_whatever_the_microbatch(tmp_path, images):
    """guided-diffusion sums the microbatches' mean losses (a gradient twice as large with two); here one
    step with microbatch 1 equals one with the whole batch at once."""
    save_init(tmp_path / "init.pt", seed=1)
    settings = replace(SETTINGS, iterations=1, lr=1e-3, weight_decay=0.0)
    whole = train(tmp_path / "whole", images, replace(settings, microbatch=0), init=tmp_path / "init.pt")
    split = train(tmp_path / "split", images, replace(settings, microbatch=1), init=tmp_path / "init.pt")
    whole_state, split_state = read_state(whole["state"]), read_state(split["state"])
    assert_states_equal(whole_state["model"], split_state["model"], atol=1e-6)
    for a, b in zip(whole_state["optimizer"]["state"].values(), split_state["optimizer"]["state"].values()):
        torch.testing.assert_close(a["exp_avg"], b["exp_avg"], atol=1e-7, rtol=1e-4)


def test_outputs_checkpoint_loads_log_and_sample_grid(tmp_path, images, capsys):
    paths = train(tmp_path / "run", images, replace(SETTINGS, iterations=3, save_every=2, sample_count=3))
    said = capsys.readouterr().err  # before the samples, which take minutes at full size, a line says so
    assert f"drawing 3 samples with the EMA weights over 2 diffusion steps for {paths['samples']}" in said
    model, _ = load_ddpm(paths["checkpoint"], FLAGS, "cpu")
    assert model is not None
    log = json.loads(paths["log_json"].read_text())
    assert [record["step"] for record in log["intervals"]] == [1, 2, 3]
    assert all(np.isfinite(record["loss"]) and record["images_per_s"] > 0 for record in log["intervals"])
    assert log["world_size"] == 1 and log["iterations_done"] == 3 and log["settings"]["batch_size"] == 4
    grid = np.asarray(Image.open(paths["samples"]))
    assert grid.shape == (2 * 128 + 4, 2 * 128 + 4, 3)  # 3 samples of 16 px, enlarged 8x, in a 2 x 2 grid
    assert read_state(paths["state"])["step"] == 3


def test_resume_after_sigkill_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, images):
    """The killed run reads its images with two DataLoader workers, the uninterrupted one in its own process."""
    settings = replace(SETTINGS, iterations=4, save_every=2, schedule_sampler="loss-second-moment")
    env = subprocess_env()

    def arguments(folder: Path, loader_workers: int) -> Path:
        args_json = folder / "args.json"
        write_arguments(args_json, images=images, flags=FLAGS, settings=settings, non_square=None, progress=False,
                        loader_workers=loader_workers, **outputs(folder))
        return args_json

    killer = tmp_path / "kill_after_first_save.py"
    killer.write_text(
        "import os, signal, sys\n"
        "import ddpmseg.diffusion.training.launch as launch, ddpmseg.diffusion.training.run as training\n"
        "save_state = training.save_state\n"
        "def save_then_die(*args, **kwargs):\n"
        "    save_state(*args, **kwargs)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "training.save_state = save_then_die\n"
        "sys.exit(launch.main(sys.argv[1:]))\n"
    )
    killed = arguments(tmp_path / "killed", loader_workers=2)
    result = subprocess.run([sys.executable, str(killer), str(killed)], env=env, capture_output=True, text=True)
    assert result.returncode == -9, result.stderr
    assert read_state(tmp_path / "killed" / "state.pt")["step"] == 2
    assert not (tmp_path / "killed" / "ema.pt").exists()
    whole_args = arguments(tmp_path / "whole", loader_workers=0)
    for command in (launch_command(nproc=1, args_json=killed), launch_command(nproc=1, args_json=whole_args)):
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr

    resumed, whole = read_state(tmp_path / "killed" / "state.pt"), read_state(tmp_path / "whole" / "state.pt")
    assert resumed["step"] == whole["step"] == 4
    assert resumed["log"]["resumed_at"] == [2] and whole["log"]["resumed_at"] == []
    assert_states_equal(resumed["model"], whole["model"])
    assert all(torch.equal(a, b) for a, b in zip(resumed["ema"], whole["ema"]))
    assert torch.equal(resumed["sampler"]["loss_history"], whole["sampler"]["loss_history"])
    assert_states_equal(torch.load(tmp_path / "killed" / "ema.pt", weights_only=True),
                        torch.load(tmp_path / "whole" / "ema.pt", weights_only=True))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_gloo_processes_on_one_node_or_on_two_train_the_weights_of_one_over_the_same_global_batches(tmp_path, images):
    """Same losses, same gradients (Adam's first and second moments: a gradient scaled by the number of
    ranks would show there, not in Adam's scale-free steps) and the same weights. The weights get a
    tolerance of lr / 10: a few biases feeding a GroupNorm have numerically zero gradients (~1e-10, below
    Adam's eps), whose float noise Adam turns into steps of up to ~lr / 10. Two "nodes" are two torchrun
    invocations on this machine (``--nnodes=2``, one process each) meeting by a c10d rendezvous on
    127.0.0.1, as the nodes of a SLURM job meet on its first node."""
    settings = replace(SETTINGS, iterations=3, batch_size=4, microbatch=1, save_every=3,
                       schedule_sampler="loss-second-moment")
    env = subprocess_env()

    def arguments(name: str) -> Path:
        args_json = tmp_path / name / "args.json"
        write_arguments(args_json, images=images, flags=FLAGS, settings=settings, non_square=None, progress=False,
                        **outputs(tmp_path / name))
        return args_json

    loopback = Rendezvous(host="127.0.0.1", port=free_port(), id="loopback")
    launches = {
        "one process": [launch_command(nproc=1, args_json=arguments("one process"))],
        "two processes": [launch_command(nproc=2, args_json=arguments("two processes"))],
        "two nodes": [launch_command(nproc=1, args_json=arguments("two nodes"), nodes=2, rendezvous=loopback)] * 2,
    }
    states = {}
    for name, commands in launches.items():
        logs = [(tmp_path / name / f"node{index}.log").open("w") for index in range(len(commands))]
        started = [subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT) for command, log in zip(commands, logs)]
        for process, log in zip(started, logs):
            process.wait(timeout=300)
            log.close()
            assert process.returncode == 0, Path(log.name).read_text()[-3000:]
        states[name] = read_state(tmp_path / name / "state.pt")
        assert json.loads((tmp_path / name / "log.json").read_text())["world_size"] == (1 if name == "one process" else 2)
    one = states["one process"]
    for name in ("two processes", "two nodes"):
        two = states[name]
        np.testing.assert_allclose([r["loss"] for r in one["log"]["intervals"]], [r["loss"] for r in two["log"]["intervals"]],
                                   rtol=1e-6, err_msg=name)
        for a, b in zip(one["optimizer"]["state"].values(), two["optimizer"]["state"].values(), strict=True):
            torch.testing.assert_close(a["exp_avg"], b["exp_avg"], atol=1e-8, rtol=1e-3, msg=name)
            torch.testing.assert_close(a["exp_avg_sq"], b["exp_avg_sq"], atol=1e-12, rtol=1e-3, msg=name)
        assert_states_equal(one["model"], two["model"], atol=settings.lr / 10)
        # every rank's sampler learnt from the whole global batch's losses
        assert int(two["sampler"]["loss_counts"].sum()) == settings.iterations * settings.batch_size
        assert torch.equal(one["sampler"]["loss_counts"], two["sampler"]["loss_counts"])
        torch.testing.assert_close(one["sampler"]["loss_history"], two["sampler"]["loss_history"], rtol=1e-5, atol=1e-7)
        for a, b in zip(one["ema"], two["ema"]):
            torch.testing.assert_close(a, b, atol=settings.lr / 10, rtol=0)


def test_loss_second_moment_sampler_learns_from_every_loss_and_reweights(tmp_path, images):
    settings = replace(SETTINGS, iterations=2, schedule_sampler="loss-second-moment")
    paths = train(tmp_path / "run", images, settings)
    sampler = read_state(paths["state"])["sampler"]
    assert int(sampler["loss_counts"].sum()) == settings.iterations * settings.batch_size
    weights = np.ones(100)
    weights[7] = 1e6  # a warmed-up sampler's weights steer the draws
    _, timesteps, importance = step_draws(0, 0, 64, weights)
    assert (timesteps == 7).mean() > 0.9
    np.testing.assert_allclose(importance[timesteps == 7], 1 / (100 * weights[7] / weights.sum()))


def test_an_unreadable_image_is_one_error_naming_it_before_training(tmp_path, images):
    broken = images[0].parent / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DdpmsegError, match=r"broken\.png: unreadable image"):
        train(tmp_path / "run", [*images, broken])
    assert not (tmp_path / "run").exists()


def test_a_non_square_image_needs_a_policy(tmp_path, images):
    wide = images[0].parent / "wide.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(wide)
    with pytest.raises(DdpmsegError, match=r"wide\.png: image is 30x20, not square"):
        train(tmp_path / "run", [*images, wide])
    paths = outputs(tmp_path / "cropped")
    train_ddpm(images=[*images, wide], flags=FLAGS, settings=replace(SETTINGS, iterations=0), non_square="center_crop",
               progress=False, **paths)
    assert paths["checkpoint"].exists()


def test_a_state_saved_under_other_inputs_starts_afresh_and_says_what_changed(tmp_path, images, capsys):
    """One identity decides: settings that change the weights, the images (changed in place too), the image
    policy, or fewer iterations than the state holds start afresh with a note; more iterations or settings
    that do not change the weights resume."""
    run = tmp_path / "run"

    def again(settings, **arguments):
        capsys.readouterr()
        paths = train(run, images, settings, **arguments)
        note = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ddpmseg note:")]
        return read_state(paths["state"]), note

    train(run, images, replace(SETTINGS, iterations=1))
    state, note = again(replace(SETTINGS, iterations=2, sample_count=1, log_every=2))  # longer: resumed
    assert state["log"]["resumed_at"] == [1] and note == []
    state, note = again(replace(SETTINGS, iterations=2, lr=5e-4))
    assert note == [f"ddpmseg note: {run / 'state.pt'}: saved under other settings.lr; training starts afresh"]
    fresh = train(tmp_path / "fresh", images, replace(SETTINGS, iterations=2, lr=5e-4))
    assert state["log"]["resumed_at"] == [] and state["step"] == 2
    assert_states_equal(state["model"], read_state(fresh["state"])["model"])
    state, note = again(replace(SETTINGS, iterations=1, lr=5e-4))
    assert note == [f"ddpmseg note: {run / 'state.pt'}: saved under other iterations (the state is at iteration 2, "
                    "more than iterations=1); training starts afresh"]
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(images[0])  # an image changed in place
    _, note = again(replace(SETTINGS, iterations=1, lr=5e-4))
    assert note and "saved under other images (1 added, removed or changed)" in note[0]
    train_ddpm(images=images, flags=FLAGS, settings=replace(SETTINGS, iterations=1, lr=5e-4), non_square="resize",
               progress=False, **outputs(run))
    assert "saved under other non_square" in capsys.readouterr().err


def test_sample_steps_beyond_the_diffusion_steps_fail_before_training(tmp_path, images):
    with pytest.raises(DdpmsegError, match="sample_steps=500 is more than the model's diffusion_steps=100"):
        train(tmp_path / "run", images, replace(SETTINGS, sample_steps=500))
    with pytest.raises(DdpmsegError, match="loader_workers must be a whole number >= 0, not -1"):
        train(tmp_path / "run", images, loader_workers=-1)
    assert not (tmp_path / "run").exists()


def test_an_init_checkpoint_of_other_flags_is_one_error_before_training(tmp_path, images):
    torch.manual_seed(0)
    model, _ = build_model_and_diffusion({**FLAGS, "num_channels": 64})
    torch.save(model.state_dict(), tmp_path / "wide.pt")
    with pytest.raises(DdpmsegError, match=r"wide\.pt: does not fit the model flags: .*check flag num_channels"):
        train(tmp_path / "run", images, init=tmp_path / "wide.pt")
    assert not (tmp_path / "run").exists()
