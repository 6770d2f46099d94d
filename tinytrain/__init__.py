"""tinytrain: train neural networks on microcontrollers.

Data flows one way: ONNX -> IR graph -> passes -> memory plan -> C -> compile -> simulate / flash.
"""
__version__ = "0.1.0"
