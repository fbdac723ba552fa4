"""The diffusion model: guided-diffusion flags and checkpoints, decoder activations (the pixel features), and DDPM training."""
