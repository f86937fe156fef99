"""One Loader for every kind of reference: absolute URLs over HTTP, `/paths` on the origins."""

from __future__ import annotations

from .. import errors
from . import Loader, Source, Validators


class SourceRouter:
    def __init__(self, http: Loader, origins: Loader | None = None):
        self.http = http
        self.origins = origins

    async def load(self, ref: str, validators: Validators | None = None) -> Source | None:
        if ref.startswith("/"):
            if self.origins is None:  # options refuse /paths without origins: not the client's fault
                raise errors.internal("No origins are configured for path sources")
            return await self.origins.load(ref, validators)
        return await self.http.load(ref, validators)

    def close(self) -> None:
        self.http.close()  # the origins fetch through the same client
