"""TFLite: conversion (``convert``), the bytes read in pure Python (``flatbuffer``) and proven
(``validate``), running them on the named runtimes (``runtime``, ``interpreter``, per-op
``op_profile``, whose CPU: ``cpu``), IntegerExporter's export (``export``, ``model_metadata``)
and the Edge TPU (``edgetpu``, ``edgetpu_log``)."""
