"""Helpers the test folders share: running the CLI (support.cli), workspaces with a config and data
(support.workspaces), and real training runs on the tiny model (support.training)."""
