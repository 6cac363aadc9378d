"""From tf.Examples to what a model consumes: reading TFRecords as ExampleGen writes them
(``data``), data checks from TFDV statistics (``statistics``), input adapters that bind features
to the model's inputs by name (``inputs``), and what a model predicts (``tasks``)."""
