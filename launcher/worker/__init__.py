"""Inside each rank (`python -m launcher.worker`): the loss fix, the first-batch self-test, reward metrics and
alerts as callbacks, a graceful stop on signals; the only part of the package that imports the training stack."""
