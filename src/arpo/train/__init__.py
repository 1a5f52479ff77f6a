"""Training: the learner-side batch, log-probs, optimisation, checkpoints and the RL/SFT loops."""
