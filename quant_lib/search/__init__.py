"""Accuracy-aware quantization on top of QAT, TFLite and the evaluation's latency: what each
layer's quantization costs (``sensitivity``) and the search for the smallest, most integer
model within the gate's budget (``search``)."""
