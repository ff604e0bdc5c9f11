"""dpo-launch: validate, plan and launch LLaMA-Factory preference training."""

__version__ = "0.1.0"
