"""ONNX in and out: ``import_onnx`` (ONNX -> IR graph) and ``export_onnx`` (IR graph with
trained parameters -> ONNX)."""
from .onnx_import import import_onnx
from .onnx_export import export_onnx

__all__ = ["import_onnx", "export_onnx"]
