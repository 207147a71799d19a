"""funnelrec: interpretable customer profiles and self-explaining recommendations from funnels."""

from funnelrec.config import IngestConfig, SplitConfig
from funnelrec.schema import FunnelrecError, InputError
from funnelrec.sequences import Sequences, load_sequences

__version__ = "0.1.0"
__all__ = [
    "FunnelrecError",
    "IngestConfig",
    "InputError",
    "Sequences",
    "SplitConfig",
    "__version__",
    "load_sequences",
]
