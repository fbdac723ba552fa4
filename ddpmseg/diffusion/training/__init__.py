"""Training or fine-tuning a guided-diffusion DDPM on unlabelled images, on one device or several."""
