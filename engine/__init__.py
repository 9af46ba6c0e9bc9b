"""aipnet: a CPU inference engine for CNNs with AIP and DrowsyNet knobs.

    import aipnet
    model = aipnet.load("reference")          # an .onnx path or a built-in name
    sess = aipnet.Session(model, threads=2)
    y = sess.run(x)                           # numpy in (batch first), numpy out
    sess.stats                                # what the last run did, per layer
"""

from .builtin import builtin_names
from .errors import AipnetError
from .model import Model, load
from .session import Session

__version__ = "0.1.0"
__all__ = ["AipnetError", "Model", "Session", "builtin_names", "load", "__version__"]
