"""`dpo-launch validate --stats`: token statistics of the data measured with LLaMA-Factory's own template
code in a worker process (`worker.py`), driven from the CLI by `runner.py`."""
