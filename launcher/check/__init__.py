"""`dpo-launch validate`: the config (as LLaMA-Factory reads it), the schemas, the cross-field rules in
`rules/`, dataset_info.json and every record in `data/`, reported as located diagnostics (`diagnostics.py`).
`validation.validate` runs the pipeline; `plan` and `train` run it first too."""
