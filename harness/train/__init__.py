"""What every task's training shares: optimiser and schedule, timing, checkpoints, torch.distributed."""
