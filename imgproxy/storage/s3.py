"""Blobs as objects in an S3 bucket (AWS, or an S3-compatible server), through boto3.

    S3Store("s3://bucket/some/prefix", endpoint="http://127.0.0.1:9000", region="us-east-1")

Credentials come from boto3's standard chain (AWS_ACCESS_KEY_ID and friends, the shared
files, an instance role). boto3 blocks, so every call runs in a small executor of this
store's own, off the event loop and apart from the default one that FileStore's disk I/O
shares. boto3 is imported only when an S3Store is made: `pip install imgproxy[s3]`.

Keys are the store's prefix plus a checked key (check_key), never anything else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from typing import Any
from urllib.parse import urlsplit

from . import StorageError, check_key

# Codes S3 (and S3-compatible servers) answer for "nothing under that key": get_object
# names it, head_object has no body and so only the status.
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3Store:
    def __init__(self, url: str, endpoint: str | None = None, region: str | None = None, *,
                 connect_timeout: float = 5, read_timeout: float = 30, max_workers: int = 8):
        import boto3  # only needed when an S3 store is configured
        import botocore.config
        import botocore.exceptions

        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
        self.bucket = parts.netloc
        prefix = parts.path.strip("/")
        if prefix:
            check_key(prefix)
            prefix += "/"
        self.prefix = prefix
        self._errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
        self._client_error = botocore.exceptions.ClientError
        config = botocore.config.Config(
            # boto3 1.36 began sending CRC32 checksums on every upload and validating them on
            # every download, which many S3-compatible servers reject or do not send: only
            # when the operation demands it
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_workers,
        )
        # a session of its own: boto3's default session is not thread-safe to create clients from
        self._client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint, region_name=region, config=config)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="s3store")

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._client.close()

    def _name(self, key: str) -> str:
        check_key(key)
        return self.prefix + key

    async def _call(self, operation: str, **params: Any) -> Any:
        method = getattr(self._client, operation)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(method, **params))

    def _missing(self, error: Exception) -> bool:
        return isinstance(error, self._client_error) and _code(error) in _MISSING

    # the protocol
    async def get(self, key: str) -> bytes | None:
        name = self._name(key)

        def read() -> bytes:  # the body streams: read it in the executor too
            reply = self._client.get_object(Bucket=self.bucket, Key=name)
            with reply["Body"] as body:
                return body.read()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, read)
        except self._errors as e:
            if self._missing(e):
                return None
            raise StorageError(_describe(e)) from e

    async def put(self, key: str, data: bytes) -> None:
        name = self._name(key)
        try:
            await self._call("put_object", Bucket=self.bucket, Key=name, Body=data)
        except self._errors as e:
            raise StorageError(_describe(e)) from e

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        """A conditional PutObject (If-None-Match: *): S3 itself decides which writer wins,
        so it is atomic across servers. A server that ignores the header would make this a
        plain put (AWS S3 and moto honour it; check others before relying on it)."""
        name = self._name(key)
        for _ in range(3):
            try:
                await self._call("put_object", Bucket=self.bucket, Key=name, Body=data, IfNoneMatch="*")
                return True
            except self._errors as e:
                code = _code(e)
                if code == "PreconditionFailed":
                    return False
                if code != "ConditionalRequestConflict":
                    raise StorageError(_describe(e)) from e
                # 409: another conditional write to that key was in flight; AWS asks to retry
        raise StorageError(f"put_if_absent {name!r}: conflicting writes kept on")

    async def head(self, key: str) -> int | None:
        name = self._name(key)
        try:
            reply = await self._call("head_object", Bucket=self.bucket, Key=name)
        except self._errors as e:
            if self._missing(e):
                return None
            raise StorageError(_describe(e)) from e
        return int(reply["ContentLength"])

    async def delete(self, key: str) -> None:
        name = self._name(key)
        try:
            await self._call("delete_object", Bucket=self.bucket, Key=name)
        except self._errors as e:
            raise StorageError(_describe(e)) from e

    async def list(self, prefix: str = "") -> list[str]:
        def keys() -> list[str]:
            found = []
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                found += [o["Key"][len(self.prefix):] for o in page.get("Contents", ())]
            return found
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, keys)
        except self._errors as e:
            raise StorageError(_describe(e)) from e


def _code(error: Exception) -> str:
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


def _describe(error: Exception) -> str:
    return f"S3: {error}"
