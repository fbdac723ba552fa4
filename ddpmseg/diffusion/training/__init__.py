"""Training or fine-tuning a guided-diffusion DDPM on unlabelled images, on one device or, under ``torchrun``,
on several with DistributedDataParallel (DDP).

The training follows guided-diffusion's ``TrainLoop``: its losses (``diffusion.training_losses``), its
timestep samplers (``uniform``, ``loss-second-moment``, updated with every iteration's losses from all
ranks), AdamW, gradient accumulation over microbatches, an EMA of the weights (what the checkpoint holds),
mixed precision on CUDA (here ``torch.autocast`` + ``GradScaler``; skipped steps leave the EMA alone, as
there) and random horizontal flips. Where it differs, and why:

- ``batch_size`` is the *global* batch of one iteration, split evenly over the ranks (guided-diffusion's
  is per rank), and the gradient is the mean over that global batch whatever the microbatch and the
  number of ranks (guided-diffusion sums the microbatches' means). So N GPUs train the same model as one.
- Every random draw of iteration ``s`` (the images and their flips, the timesteps, the noise, torch's
  generator for dropout) comes from (seed, s) (and the rank, for dropout) alone: a run resumed from its
  state file, or spread over ranks, draws exactly what an uninterrupted single-process run draws.
- Timesteps are drawn for the whole global batch at once from the sampler's weights, and a loss-aware
  sampler is updated once per iteration with all of its losses in global order.
- Images are read as they are needed (:mod:`~ddpmseg.diffusion.training.images`): each rank reads its
  share of each batch in DataLoader workers, so a process's memory does not grow with the number of
  images; their headers are checked before training starts.

Every ``save_every`` iterations and at the end, rank 0 saves the whole state (weights, EMA, optimizer,
grad scaler, sampler, step, log, random generators) atomically; a run that finds it resumes from it.
"""
