"""The evaluation worker, `python -m launcher.evaluate.worker TASK --args-file REQUEST.json`: the only part of
launcher.evaluate that imports torch and LLaMA-Factory (inside the task functions, so argument errors stay fast)."""
