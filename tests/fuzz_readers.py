"""Run by tests/test_model_format.py in a subprocess: each model file given is fed to each reader;
one line per (model, reader): index, reader, outcome (ok or the exception's class name)."""
import sys

from quant_lib import edgetpu, tflite

READERS = {
    "read_flatbuffer": tflite.read_flatbuffer,
    "edgetpu.analyze": edgetpu.analyze,
    "inspect_integer": tflite.inspect_integer,
    "TFLiteClassifier": lambda b: tflite.TFLiteClassifier(b).predict(
        {k: __import__("numpy").zeros([1] + list(d["shape"][1:]), "float32")
         for k, d in tflite.TFLiteClassifier(b)._in.items()}),  # pylint: disable=protected-access
}

for arg in sys.argv[1:]:
    index, path = arg.split("=", 1)
    data = open(path, "rb").read()
    for name, read in READERS.items():
        print(f"{index} {name} start", flush=True)
        try:
            read(data)
            outcome = "ok"
        except Exception as e:  # noqa: BLE001  (the test judges the class)
            outcome = type(e).__name__
        print(f"{index} {name} {outcome}", flush=True)
