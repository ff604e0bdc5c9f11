"""Evaluate, gate and iterate: what comes after a run (dpo-launch generate, pairs, eval, loop).

The `dpo-launch` process plans, judges over HTTP or a web page, computes the statistics and writes the results;
everything that needs torch or LLaMA-Factory (ChatModel generation, reward-model scores, LLaMA-Factory's DPO
evaluation, LoRA export) runs in a worker process of its own: `python -m launcher.evaluate.worker TASK`
(launcher.evaluate.process starts and supervises it).
"""
