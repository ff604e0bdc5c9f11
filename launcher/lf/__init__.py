"""What LLaMA-Factory 0.9.5 makes of a config, as pure functions of its flat key/value dict: the defaults it
fills in, the loss that trains, the reference model it builds, the DeepSpeed settings it reads.

The facts every later stage shares: `check/` warns with them, `plan/` prints them, the worker's self-test
holds the run to them. Nothing here imports torch or reads more than the DeepSpeed JSON a config names.
"""
