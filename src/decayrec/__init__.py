"""decayrec: how customers' interest fades, from their event logs.

The public surface is small; see the README for the guide.
"""

from decayrec.errors import DecayrecError, InputError, StoreError
from decayrec.events import open_events
from decayrec.ingest import IngestReport, ingest
from decayrec.store import EventStore
from decayrec.timeparse import parse_time

__version__ = "0.1.0"

__all__ = [
    "DecayrecError",
    "EventStore",
    "IngestReport",
    "InputError",
    "StoreError",
    "__version__",
    "ingest",
    "open_events",
    "parse_time",
]
