"""`store:<key>`: an upload store's original, read from the store's BlobStore.

Only the store makes these references (store/service.py builds the key from an
image's ID): the query API takes http(s) URLs and paths, jobs their own schemes.
"""

from __future__ import annotations

from .. import errors
from ..storage import BlobStore
from . import Source, Validators

SCHEME = "store:"


class StoreLoader:
    def __init__(self, blobs: BlobStore):
        self.blobs = blobs

    async def load(self, ref: str, validators: Validators | None = None) -> Source | None:
        body = await self.blobs.get(ref.removeprefix(SCHEME))  # the backend checks the key
        if body is None:
            raise errors.not_found("No such image")
        return Source(body)

    def close(self) -> None:
        pass  # the blobs are the store's own
