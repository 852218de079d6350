"""Provider runs on a fleet of machines, through Temporal (``[runs.executor] kind =
"temporal"``): the run workflow, ``codexd worker``, and the daemon's side of it.
See docs/design.md, "Running on a fleet", and docs/operations.md, "Running a fleet"."""
