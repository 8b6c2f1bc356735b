"""GRPO building blocks used by `rlspec.runtime.train`: advantages and losses (`algos`), the
temperature controllers (`temperature`), the prompt sampler (`sampler`), checkpoints (`checkpoint`)
and the DeepSpeed set-up (`distributed`)."""
