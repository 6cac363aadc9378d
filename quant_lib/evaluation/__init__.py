"""Float-vs-int8 evaluation: the Beam scoring pipeline (``scoring``), exact mergeable statistics
(``metrics``), paired evidence (``paired``), the gate as a ``tfma.EvalConfig`` (``gate``),
latency and the speed gate (``latency``), and the decision beside TFMA's (``verdict``)."""
