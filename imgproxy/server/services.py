"""The services a server is made of, wired from Settings: the render service, results,
the job queue and runner. Handlers reach them through Application.services."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..config import Settings
from ..delivery.cache import ResultCache
from ..delivery.results import Results
from ..errors import ProxyError
from ..jobs import destinations
from ..jobs.model import JobRecord, status_document
from ..jobs.queue import JobQueue, SqliteQueue
from ..jobs.runner import JobRunner
from ..metrics import Metrics
from ..pool import Pool
from ..render import RenderService
from ..sources.cache import CachingLoader
from ..sources.files import FileLoader
from ..sources.ftp import FtpLoader
from ..sources.http import HttpLoader
from ..sources.origins import OriginsLoader
from ..sources.router import SourceRouter
from ..sources.store import StoreLoader
from ..storage import BlobStore
from ..storage.files import FileStore
from ..storage.redis import RedisStore
from ..store.metadata import Records, SqliteRecords
from ..store.service import TASK, StoreService

log = logging.getLogger("imgproxy.server")


@dataclass
class Services:
    """What handlers use; made once per server from Settings."""
    pool: Pool
    metrics: Metrics
    render: RenderService
    results: Results
    jobs: JobQueue | None = None  # with jobs = True, or a store (its background variants)
    job_runner: JobRunner | None = None
    store: StoreService | None = None


def make_result_cache(settings: Settings, metrics: Metrics) -> ResultCache | None:
    count = metrics.cache.labels  # bound below: hit, miss, error
    if settings.cache_url:
        store = RedisStore(settings.cache_url, settings.cache_ttl, settings.cache_max_entry_bytes)
    elif settings.cache_dir:
        store = FileStore(settings.cache_dir, settings.cache_max_bytes)
    else:
        return None
    return ResultCache(store, settings.cache_ttl, lambda result: count(result).inc())


def origin_bases(settings: Settings) -> tuple[str, ...]:
    """Where /paths are fetched: `origins`, else `implicit_base_url` alone."""
    return settings.origins or ((settings.implicit_base_url,) if settings.implicit_base_url else ())


def make_loader(settings: Settings, metrics: Metrics, store_blobs: BlobStore | None = None) -> CachingLoader:
    """Every fetch goes through one cache of originals (or, with no room set, just
    one fetch at a time per source); /paths go to the origins, the master first."""
    bases = origin_bases(settings)
    trusted = tuple(urlsplit(base).netloc for base in bases)  # the operator's own hosts
    http = HttpLoader(settings, trusted_hosts=trusted)
    origins = None
    if bases:
        origins = OriginsLoader(bases, http, settings.origin_hedge_ms / 1000.0,
                                lambda base, outcome: metrics.origin_fetches.labels(base, outcome).inc())
    disk = (FileStore(settings.source_cache_dir, settings.source_cache_dir_bytes)
            if settings.source_cache_dir else None)
    ftp = FtpLoader(settings) if settings.jobs else None  # job sources only: the query API takes http(s)
    files = FileLoader(settings) if settings.jobs and settings.job_file_root else None
    uploads = StoreLoader(store_blobs) if store_blobs is not None else None
    router = SourceRouter(http, origins, ftp=ftp, files=files, store=uploads)
    return CachingLoader(router, settings.source_cache_bytes, disk,
                         settings.source_cache_ttl, lambda result: metrics.source_cache.labels(result).inc())


def make_services(settings: Settings, pool: Pool, metrics: Metrics) -> Services:
    blobs = make_store_blobs(settings) if settings.store else None
    render = RenderService(settings, make_loader(settings, metrics, blobs), pool, metrics)
    services = Services(pool, metrics, render, Results(render, make_result_cache(settings, metrics)))
    if settings.jobs or settings.store:
        queue = make_job_queue(settings)
        services.jobs = queue
        tasks = {}
        if settings.store:
            services.store = StoreService(settings, render, blobs, make_store_records(settings),
                                          queue, wake=lambda: services.job_runner.wake())
            tasks[TASK] = services.store.run_task
        services.job_runner = JobRunner(settings, queue, render, destinations.deliver, callback_for(settings), tasks)
    return services


def make_store_blobs(settings: Settings):
    if settings.store_url:
        from ..storage.s3 import S3Store  # boto3: only with an S3 store
        return S3Store(settings.store_url, settings.store_s3_endpoint, settings.store_s3_region)
    # Files a web server can read (the README's NGINX block serves hits without Python).
    return FileStore(settings.store_dir, fan_out=False, file_mode=0o644)


def make_store_records(settings: Settings) -> Records:
    if settings.store_meta_url:
        from ..store.metadata_redis import RedisRecords
        return RedisRecords(settings.store_meta_url)
    return SqliteRecords(settings.store_db)


def callback_for(settings: Settings):
    """POSTs a finished job's status document to its callbackURL; a failed callback is logged."""
    async def notify(record: JobRecord) -> None:
        if not record.spec.callback:
            return
        try:
            await destinations.post_json(record.spec.callback, status_document(record), settings=settings)
        except ProxyError as e:
            log.warning("job %s: callback failed: %s", record.id, e)
    return notify


def make_job_queue(settings: Settings) -> JobQueue:
    if settings.job_queue_url:
        from ..jobs.queue_redis import RedisQueue  # only with several nodes
        return RedisQueue(settings.job_queue_url)
    return SqliteQueue(settings.job_db)
