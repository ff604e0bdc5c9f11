"""`dpo-launch plan`: what `train` would do, as pure and printable data: batch and steps, the memory
estimate, the topology and the exact launch (argv and environment) of every node; no torch import."""
