"""Fixtures for real training runs (tiny model, demo data). Filled in by the training work."""
