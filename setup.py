"""yolo-asff: YOLOv3 with Adaptively Spatial Feature Fusion, a complete training framework."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent

setup(
    name="yolo-asff",
    version="0.1.0",
    description="YOLOv3 with Adaptively Spatial Feature Fusion (ASFF): training, evaluation and inference",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    # The shipped configs live in configs/ of the repository and in yolo_asff/configs/ of an installed
    # package, so that `yolo-asff train --config builtin` works from any folder.
    packages=find_packages(include=["yolo_asff", "yolo_asff.*"]) + ["yolo_asff.configs"],
    package_dir={"yolo_asff.configs": "configs"},
    install_requires=[
        "torch>=2.0",
        "torchvision>=0.15",
        "numpy>=1.21",
        "pyyaml>=5.4",
        "opencv-python-headless>=4.5",
        "tqdm>=4.60",
        "albumentations>=2.0",
        "pycocotools>=2.0",
        "tensorboard>=2.10",
        "pillow>=8",  # picture sizes and EXIF orientation from the header (yolo_asff/data/images.py)
        "matplotlib>=3.5",  # the run's plots: PR and F1 curves, confusion matrix, labels, results.png
    ],
    extras_require={
        # OpenCV 5 drops cv2.dnn.readNetFromDarknet, which the Darknet round-trip test uses.
        "test": ["pytest>=7", "opencv-python-headless>=4.5,<5", "onnx>=1.14", "onnxruntime>=1.16",
                 "faster-coco-eval>=1.6"],
        # ONNX export and its check against onnxruntime (tools/export.py --check).
        "export": ["onnx>=1.14", "onnxruntime>=1.16"],
        # test.coco_backend=faster: faster-coco-eval, a C++ drop-in for pycocotools' COCOeval.
        "fast": ["faster-coco-eval>=1.6"],
    },
    package_data={"yolo_asff": ["assets/*.jpg", "assets/*.md"],
                  "yolo_asff.configs": ["*.yaml", "*/*.yaml", "*/*/*.yaml"]},
    entry_points={"console_scripts": ["yolo-asff = yolo_asff.cli:main"]},
    license="MIT",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
