"""What tfx-qat writes on and inside its artifacts, each key spelled once: the MLMD custom
properties of every artifact (``records``), the JSON files inside them (``report_files``) and
the CLI's summary.json (``run_summary``).
The lowest room: every other one may read these, they read none."""
