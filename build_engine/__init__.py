"""Build-time tools: ONNX export, int8 quantisation, TensorRT engine building, the engine directory writer.

Uses rgpt_rt's reference model; rgpt_rt never imports this package at run time.
"""
