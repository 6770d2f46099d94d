from .tensor import Tensor, TensorRole
from .graph import Graph, Node
from .registry import OpDef, register_op, get_op, supported_ops, OUT

__all__ = ["Tensor", "TensorRole", "Graph", "Node", "OpDef", "register_op", "get_op",
           "supported_ops", "OUT"]
