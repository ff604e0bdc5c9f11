"""The cross-field rules of `validate`, one module per family; `registry.check_rules` runs them all."""
