"""``python -m yolo_asff COMMAND ...``: the same as the ``yolo-asff`` command."""
import sys

from .cli import main

sys.exit(main())
