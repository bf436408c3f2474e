"""dlcamp: a hands-on deep-learning bootcamp that runs offline on a laptop CPU.

The package's layers and where new code goes: docs/architecture.md.
"""

from dlcamp.core import moved

__version__ = "0.1.0"

moved.install()  # old module paths (dlcamp.compare, dlcamp.scratch, ...) still import, warning
