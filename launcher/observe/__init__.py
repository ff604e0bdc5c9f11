"""Reading a run: TensorBoard event files, health alerts, the live monitor, the report and a TensorBoard
server; everything from the run directory alone."""
