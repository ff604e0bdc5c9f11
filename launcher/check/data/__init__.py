"""The data checks: dataset_info.json and its entries, the data files, JSON streaming, and each record
against LLaMA-Factory's converter rules (`records.py` fast paths, `explain.py`/`extras.py` explanations, the
shared `verdicts.py` vocabulary)."""
