"""What tfx-qat writes on and inside its artifacts, each key spelled once: the MLMD custom
properties of every artifact (``records``) and the JSON files inside them (``report_files``).
The lowest room: every other one may read these, they read none."""
