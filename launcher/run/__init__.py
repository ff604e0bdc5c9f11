"""`dpo-launch train`'s side of a run: checks on this machine, the run directory (guard, record, resume),
the supervised job and its process tree."""
