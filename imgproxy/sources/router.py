"""One Loader for every kind of reference: absolute URLs over HTTP, `/paths` on the origins,
for jobs ftp(s):// and file://, and the upload store's store: originals, when their loaders
are given."""

from __future__ import annotations

from .. import errors
from ..errors import Code
from . import Loader, Source, Validators


class SourceRouter:
    def __init__(self, http: Loader, origins: Loader | None = None, *,
                 ftp: Loader | None = None, files: Loader | None = None, store: Loader | None = None):
        self.http = http
        self.origins = origins
        self.ftp = ftp
        self.files = files
        self.store = store

    async def load(self, ref: str, validators: Validators | None = None) -> Source | None:
        if ref.startswith("/"):
            if self.origins is None:  # options refuse /paths without origins: not the client's fault
                raise errors.internal("No origins are configured for path sources")
            return await self.origins.load(ref, validators)
        scheme = ref.partition(":")[0].lower()
        if scheme in ("ftp", "ftps"):
            if self.ftp is None:
                raise errors.forbidden(Code.URL, "FTP sources are not enabled")
            return await self.ftp.load(ref, validators)
        if scheme == "store" and self.store is not None:
            return await self.store.load(ref, validators)
        if scheme == "file":
            if self.files is None:
                raise errors.forbidden(Code.URL, "file sources are not enabled")
            return await self.files.load(ref, validators)
        return await self.http.load(ref, validators)

    def close(self) -> None:
        self.http.close()  # the origins fetch through the same client
        for loader in (self.ftp, self.files):
            if loader is not None:
                loader.close()
