"""The online feature store as a Dagster resource: where ``online_features`` publishes."""

import dagster as dg

from serving.online_store import OnlineStore, open_store


class OnlineStoreResource(dg.ConfigurableResource):
    """The online feature store the service reads (``serving.online_store``).

    Attributes:
        url: ``redis://host:port/db`` for Redis, ``sqlite:///abs/path.sqlite`` or a path
            for the embedded store (``Settings.online_store``).
        namespace: the key space of the source's rows (the source name).
    """

    url: str
    namespace: str

    def open(self) -> OnlineStore:
        """A new client of the store; close it after use (it is a context manager)."""
        return open_store(self.url)
