"""The real-time service: durable event store, live state, HTTP API and dashboard."""

from funnelrec.serve.store import EventStore

__all__ = ["EventStore", "create_app"]


def create_app(*args, **kwargs):
    """See `funnelrec.serve.app.create_app` (imported lazily: FastAPI loads only when serving)."""
    from funnelrec.serve.app import create_app as make

    return make(*args, **kwargs)
