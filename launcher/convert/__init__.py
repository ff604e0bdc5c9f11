"""`dpo-launch convert`: preference data in other tools' formats (`formats.py`) to LLaMA-Factory's ShareGPT
ranking or KTO rows, streamed; `register.py` adds the result to a dataset_info.json."""
