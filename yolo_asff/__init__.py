"""yolo-asff: YOLOv3 with Adaptively Spatial Feature Fusion."""
from .config import Config, ConfigError, load_config
from .models import build_model
from .version import __version__

__all__ = ["Config", "ConfigError", "build_model", "load_config", "load_darknet_weights", "__version__"]


def __getattr__(name: str):
    # The Darknet reader is imported on first use, not with the package, so a bare `import yolo_asff`
    # stays light; anything that loads weights (engine.checkpoint) has imported it already.
    if name == "load_darknet_weights":
        from .io.darknet import load_darknet_weights

        return load_darknet_weights
    raise AttributeError(f"module 'yolo_asff' has no attribute {name!r}")
