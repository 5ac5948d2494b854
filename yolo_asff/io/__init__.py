"""Reading and writing weights in other projects' formats."""
from .darknet import darknet_layers, load_darknet_weights, save_darknet_weights, write_darknet_cfg

__all__ = ["darknet_layers", "load_darknet_weights", "save_darknet_weights", "write_darknet_cfg"]
