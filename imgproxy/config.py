"""Settings: one frozen object built from defaults < a Python config file < flags.

Option names and forms are Pilbox's: `--name=value` flags and lowercase
variables in a config file; lists are comma-separated. Anything unknown or
malformed stops start-up with a one-line message that names the option.
"""

from __future__ import annotations

import dataclasses
import os
import re
import runpy
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .errors import ProxyError
from .options import values
from .plan import AUTO, OPERATIONS, POSITIONS, Position


class ConfigError(Exception):
    """A bad option; the message is one line and names it."""


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false or 1/0, got {value!r}")


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"-?[0-9]+", text):
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(text)


def _positive(convert):
    def check(value: Any):
        n = convert(value)
        if n <= 0:
            raise ValueError(f"must be greater than 0, got {value!r}")
        return n
    return check


def _non_negative(value: Any) -> int:
    n = _integer(value)
    if n < 0:
        raise ValueError(f"must be 0 or more, got {value!r}")
    return n


def _float(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None


def _str(value: Any) -> str | None:
    text = str(value).strip()
    return text or None


def _list(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple, set)) else str(value).split(",")
    return tuple(s for s in (str(i).strip() for i in items) if s)


def _query_value(parser: Callable[[str], Any]):
    """Server-wide image defaults use the query parameter's own parser."""
    def convert(value: Any):
        if isinstance(value, bool):
            value = int(value)
        return parser(str(value).strip())
    return convert


def _port(value: Any) -> int:
    n = _integer(value)
    if not 1 <= n <= 65535:
        raise ValueError(f"must be a port number from 1 to 65535, got {value!r}")
    return n


def _encoder_quality(value: Any) -> int:
    """A number 1-99: "keep" only means something for JPEG output (the source's tables)."""
    quality = _query_value(values.parse_quality)(value)
    if quality == "keep":
        raise ValueError("keep applies to JPEG only (option quality); give a number from 1 to 99")
    return quality


def _operations(value: Any) -> tuple[str, ...]:
    return values.parse_operations(",".join(_list(value)))


def _formats(value: Any) -> tuple[str, ...]:
    from PIL import Image

    Image.init()
    names = tuple(n.upper() for n in _list(value))
    for name in names:
        if name not in Image.OPEN:
            raise ValueError(f"Pillow cannot read format {name!r}")
    return names


def _url_base(value: Any) -> str | None:
    text = _str(value)
    if text and not text.lower().startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return text


def _url_bases(value: Any) -> tuple[str, ...]:
    bases = _list(value)
    for base in bases:
        _url_base(base)
    return bases


_PRESET_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}\Z")
# First path segments that are the server's own routes, never presets.
RESERVED_NAMES = ("health", "info", "metrics", "jobs", "images")


def _presets(value: Any) -> tuple[tuple[str, str], ...]:
    """name -> query-API parameters ("w=220&h=220&mode=crop"); a dict in a config
    file, or name:parameters pairs separated by ';' on the command line."""
    if isinstance(value, dict):
        pairs = list(value.items())
    else:
        pairs = [item.split(":", 1) for item in str(value).split(";") if item.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError("expected name:parameters;name:parameters")
    presets = []
    for name, query in pairs:
        name, query = str(name).strip(), str(query).strip().lstrip("?")
        if not _PRESET_NAME.match(name) or name in RESERVED_NAMES:
            raise ValueError(f"bad preset name {name!r}: lowercase letters, digits, _ and -, "
                             f"starting with a letter, and not one of {', '.join(RESERVED_NAMES)}")
        presets.append((name, query))
    return tuple(presets)


def _sizes(value: Any) -> tuple[str, ...]:
    sizes = _list(value)
    for size in sizes:
        if not values.SIZE.match(size):
            raise ValueError(f"bad size {size!r}: WxH or WxH! (W or H may be 0)")
    return sizes


# Words after /images/<id>/ that are the store's own, never a variant.
STORE_WORDS = ("original", "next", "previous", "random", "browse")
_VARIANT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}\Z")
DEFAULT_VARIANTS = (("thumbnail", "150x150", "WEBP", 80), ("medium", "800x800", "WEBP", 85),
                    ("large", "1920x1920", None, 90))


def _variants(value: Any) -> tuple[tuple[str, str, str | None, int | None], ...]:
    """name -> {"size": "150x150", "format": "webp", "quality": 80} in a config file
    (format and quality optional; no format keeps the original's); on the command line
    name:size[:format[:quality]] separated by ';'. Kept as (name, size, format, quality)."""
    if isinstance(value, dict):
        items = []
        for name, spec in value.items():
            if not isinstance(spec, dict) or set(spec) - {"size", "format", "quality"} or "size" not in spec:
                raise ValueError(f"variant {name!r}: expected {{'size': ..., 'format': ..., 'quality': ...}}")
            items.append((name, spec["size"], spec.get("format"), spec.get("quality")))
    else:
        items = []
        for item in str(value).split(";"):
            if item.strip():
                parts = item.split(":")
                if not 2 <= len(parts) <= 4:
                    raise ValueError("expected name:size[:format[:quality]];...")
                items.append(tuple(parts) + (None,) * (4 - len(parts)))
    found = []
    for name, size, fmt, quality in items:
        name, size = str(name).strip(), str(size).strip()
        if not _VARIANT_NAME.match(name) or name in STORE_WORDS:
            raise ValueError(f"bad variant name {name!r}: lowercase letters, digits, _ and -, starting "
                             f"with a letter, and not one of {', '.join(STORE_WORDS)}")
        if not values.SIZE.match(size) or size.rstrip("!") in ("0x0",):
            raise ValueError(f"variant {name!r}: bad size {size!r}: WxH or WxH!")
        fmt = values.parse_format(str(fmt).strip()) if fmt not in (None, "") else None
        if fmt == AUTO:
            raise ValueError(f"variant {name!r}: a stored variant has one format, not auto")
        quality = _encoder_quality(quality) if quality not in (None, "") else None
        found.append((name, size, fmt, quality))
    if len({f[0] for f in found}) != len(found):
        raise ValueError("two variants have the same name")
    return tuple(found)


def _s3_url(value: Any) -> str | None:
    text = _str(value)
    if text and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,62}(/[A-Za-z0-9._/-]*)?", text):
        raise ValueError("expected s3://bucket or s3://bucket/prefix")
    return text


def _redis_url(value: Any) -> str | None:
    text = _str(value)
    if text and not text.lower().startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return text


JOB_SCHEMES = ("http", "https", "ftp", "ftps", "file")


def _destination_prefixes(value: Any) -> tuple[str, ...]:
    """URL prefixes a job may upload to: a scheme and host (none for file:), no password,
    query or fragment. Compared by jobs/destinations.py at path-segment boundaries."""
    from urllib.parse import urlsplit

    prefixes = _list(value)
    for prefix in prefixes:
        try:
            parts = urlsplit(prefix)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError(f"malformed URL prefix {prefix!r}") from None
        scheme = parts.scheme.lower()
        if scheme not in JOB_SCHEMES or "://" not in prefix:
            raise ValueError(f"{prefix!r} must start with one of {', '.join(s + '://' for s in JOB_SCHEMES)}")
        if parts.password is not None:
            raise ValueError("a destination prefix must not hold a password; put it in job_credentials")
        if parts.query or parts.fragment or re.search(r"[\x00-\x20\x7f\\]", prefix):
            raise ValueError(f"{prefix!r} must not have a query, fragment, whitespace or backslashes")
        if scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                raise ValueError(f"{prefix!r}: a file prefix is file:///absolute/path")
        elif not parts.hostname:
            raise ValueError(f"{prefix!r} has no host")
    return prefixes


_CREDENTIAL_KEY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._:-]+)(:[0-9]{1,5})?\Z")


def _credentials(value: Any) -> tuple[tuple[str, str], ...]:
    """{"host" or "host:port": "password"} in a config file; host=password,host=password as a
    flag. Error messages name hosts only, never a password."""
    if isinstance(value, dict):
        pairs = list(value.items())
    else:
        pairs = []
        for item in str(value).split(","):
            if item.strip():
                key, sep, password = item.partition("=")
                if not sep:
                    raise ValueError("expected host=password,host=password")
                pairs.append((key, password))
    credentials = []
    for key, password in pairs:
        key = str(key).strip().lower()
        if not _CREDENTIAL_KEY.match(key):
            raise ValueError(f"bad host {key[:80]!r}: host or host:port")
        if not isinstance(password, str) or not password:
            raise ValueError(f"the password for {key!r} must be a non-empty string")
        credentials.append((key, password))
    return tuple(credentials)


def _directory(value: Any) -> str | None:
    text = _str(value)
    if text is None:
        return None
    if not os.path.isabs(text):
        raise ValueError(f"{text!r} is not an absolute path")
    if not os.path.isdir(text):
        raise ValueError(f"{text!r} is not an existing directory")
    return os.path.normpath(text)


def _option(default: Any, convert: Callable[[Any], Any], help: str, secret: bool = False) -> Any:
    """`secret`: never shown (repr, --help): only whether it is set."""
    return field(default=default, repr=not secret, metadata={"convert": convert, "help": help, "secret": secret})


@dataclass(frozen=True, slots=True)
class Settings:
    # server
    address: str = _option("127.0.0.1", _str, "address to listen on")
    port: int = _option(8888, _port, "port to listen on")
    config: str | None = _option(None, _str, "path to a Python configuration file")
    debug: bool = _option(False, _bool, "log at debug level")
    workers: int = _option(0, _non_negative, "image worker processes; 0 = one per core")
    max_queue: int = _option(0, _non_negative, "tasks that may wait for a worker; 0 = 4 per worker")
    process_timeout: float = _option(10.0, _positive(_float), "seconds a worker may spend on one image")
    worker_memory_limit: int = _option(1 << 30, _non_negative, "address-space limit per worker in bytes; 0 = none")
    # security
    client_name: str | None = _option(None, _str, "client name that requests must carry as client=")
    client_key: tuple[str, ...] = _option((), _list, "signing key(s); several allow key rotation")
    allowed_hosts: tuple[str, ...] = _option((), _list, "hosts (host or host:port) that may be fetched")
    allowed_operations: tuple[str, ...] = _option(OPERATIONS, _operations, "operations allowed")
    max_operations: int = _option(10, _positive(_integer), "most operations in one request")
    max_resize_width: int = _option(15000, _positive(_integer), "largest resize width")
    max_resize_height: int = _option(15000, _positive(_integer), "largest resize height")
    # fetching
    max_requests: int = _option(40, _positive(_integer), "most concurrent fetches")
    timeout: float = _option(10.0, _positive(_float), "total fetch timeout in seconds")
    connect_timeout: float = _option(3.0, _positive(_float), "fetch connect timeout in seconds")
    max_source_bytes: int = _option(20_000_000, _positive(_integer), "largest source image in bytes")
    implicit_base_url: str | None = _option(None, _url_base, "the origin of path requests when origins is unset")
    origins: tuple[str, ...] = _option((), _url_bases, "base URLs of path requests: the master, then fallbacks")
    origin_hedge_ms: int = _option(1000, _positive(_integer),
                                   "ms to wait for the master before asking the fallback origins too")
    ca_certs: str | None = _option(None, _str, "CA certificates file (PEM)")
    validate_cert: bool = _option(True, _bool, "verify the origin's TLS certificate")
    proxy_host: str | None = _option(None, _str, "HTTP proxy host for fetches")
    proxy_port: int | None = _option(None, _port, "HTTP proxy port for fetches")
    user_agent: str | None = _option(None, _str, "User-Agent sent to origins")
    # decoding
    max_source_pixels: int = _option(50_000_000, _positive(_integer), "largest source in pixels")
    max_output_pixels: int = _option(50_000_000, _positive(_integer), "largest output in pixels")
    input_formats: tuple[str, ...] = _option(("JPEG", "PNG", "GIF", "WEBP", "TIFF", "AVIF"), _formats,
                                             "source formats accepted")
    # replies
    content_type_from_image: bool = _option(False, _bool,
                                            "accepted for Pilbox configs; Content-Type is always the output's")
    cache_control: str | None = _option(None, _str, "Cache-Control of successful replies; unset = the origin's")
    error_cache_control: str = _option("public, max-age=60", _str, "Cache-Control of error replies")
    # result cache
    cache_dir: str | None = _option(None, _str, "directory of the filesystem result cache; unset = off")
    cache_max_bytes: int = _option(1 << 30, _positive(_integer), "size of the filesystem cache in bytes")
    cache_url: str | None = _option(None, _redis_url, "redis://host:port/db of a shared result cache")
    cache_ttl: int = _option(86400, _non_negative, "seconds a cached result is served; 0 = no expiry")
    cache_max_entry_bytes: int = _option(10_000_000, _positive(_integer), "largest result stored in Redis")
    # image defaults (the query parameter overrides each)
    background: tuple[int, int, int, int] = _option((255, 255, 255, 0), _query_value(values.parse_background),
                                                    "default bg: RGB, RRGGBB, ARGB or AARRGGBB")
    expand: bool = _option(False, _query_value(values.parse_expand), "default expand for rotate")
    filter: str = _option("antialias", _query_value(values.parse_filter), "default resize filter")
    format: str | None = _option(None, _query_value(values.parse_format), "default output format")
    mode: str = _option("crop", _query_value(values.parse_mode), "default resize mode")
    operation: tuple[str, ...] = _option(("resize",), _operations, "default operation(s)")
    optimize: bool = _option(False, _query_value(values.parse_optimize), "default optimize")
    position: Position = _option((0.5, 0.5), _query_value(values.parse_position),
                                        "default crop position")
    preserve_exif: bool = _option(False, _query_value(values.parse_preserve_exif), "default exif")
    progressive: bool = _option(False, _query_value(values.parse_progressive), "default progressive")
    quality: int | str = _option(90, _query_value(values.parse_quality), "default quality, 1-99 or keep")
    quality_webp: int = _option(90, _encoder_quality, "default quality of WebP output")
    quality_avif: int = _option(85, _encoder_quality, "default quality of AVIF output")
    retain: int = _option(75, _query_value(values.parse_retain), "default adapt retain percent")
    # metadata and orientation (server-wide; no query parameter)
    auto_orient: bool = _option(False, _bool, "apply the EXIF orientation before any operation")
    strip_gps: bool = _option(True, _bool, "drop GPS position data from EXIF kept with exif=1")
    # path URLs and presets
    presets: tuple[tuple[str, str], ...] = _option((), _presets, "named parameter sets (name:w=220&h=220;...)")
    sizes: tuple[str, ...] = _option((), _sizes, "WxH / WxH! sizes path URLs may use; unset = any")
    presets_only: bool = _option(False, _bool, "unsigned requests may use only presets, listed sizes and fmt")
    # the job API (POST /jobs)
    jobs: bool = _option(False, _bool, "serve the job API (needs job_key)")
    job_key: str | None = _option(None, _str, "HMAC-SHA256 key that signs job requests (X-Signature)",
                                  secret=True)
    job_db: str = _option("imgproxy-state/jobs.sqlite3", _str, "SQLite file of the job queue (one node)")
    job_queue_url: str | None = _option(None, _redis_url, "redis://... of a job queue shared by several nodes")
    job_max_attempts: int = _option(5, _positive(_integer), "attempts of a job before it fails")
    job_concurrency: int = _option(0, _non_negative, "worker slots jobs may take at once; 0 = half the workers")
    job_lease_seconds: float = _option(60.0, _positive(_float), "seconds a job is held before another may retry it")
    job_retry_seconds: float = _option(1.0, _positive(_float), "first retry delay; it doubles, with jitter")
    # cache of originals
    source_cache_bytes: int = _option(0, _non_negative, "bytes of fetched originals kept in memory; 0 = none")
    source_cache_dir: str | None = _option(None, _str, "directory of the on-disk cache of originals; unset = none")
    source_cache_dir_bytes: int = _option(1 << 30, _positive(_integer), "size of that directory in bytes")
    source_cache_ttl: int = _option(300, _non_negative, "seconds an original is used before it is revalidated")
    # jobs
    job_allowed_destinations: tuple[str, ...] = _option((), _destination_prefixes,
                                                        "URL prefixes jobs may upload to; unset = none")
    job_credentials: tuple[tuple[str, str], ...] = _option((), _credentials,
                                                           "passwords of FTP hosts: host=password,host:port=password",
                                                           secret=True)
    job_file_root: str | None = _option(None, _directory,
                                        "directory file:// job sources and destinations must be under; unset = off")

    # the upload store (POST /images)
    store_dir: str | None = _option(None, _str, "directory of the upload store; unset = no store (or store_url)")
    store_url: str | None = _option(None, _s3_url, "s3://bucket/prefix of an upload store on S3")
    store_s3_endpoint: str | None = _option(None, _url_base, "endpoint of an S3-compatible server; unset = AWS")
    store_s3_region: str | None = _option(None, _str, "S3 region; unset = the AWS chain's")
    store_token: str | None = _option(None, _str, "Bearer token that uploads, deletes and browsing need",
                                      secret=True)
    store_db: str = _option("imgproxy-state/store.sqlite3", _str, "SQLite file of the store's image records")
    store_meta_url: str | None = _option(None, _redis_url,
                                         "redis://... of image records shared by several nodes")
    store_variants: tuple[tuple[str, str, str | None, int | None], ...] = _option(
        DEFAULT_VARIANTS, _variants, "named variants made on upload: name:size[:format[:quality]];...")
    store_sizes: tuple[str, ...] = _option((), _sizes, "WxH / WxH! sizes of stored images anyone may ask for; "
                                           "unset = any (others need a signature)")
    store_serve_original: bool = _option(True, _bool, "serve /images/<id>/original, the bytes as uploaded")
    store_signed_reads: bool = _option(False, _bool, "reads by ID need a signature (client_key) too")
    store_public_browsing: bool = _option(False, _bool, "list, next, previous and random without the token")
    max_upload_bytes: int = _option(20_000_000, _positive(_integer), "largest upload in bytes")

    @property
    def store(self) -> bool:
        return bool(self.store_dir or self.store_url)

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def job_slots(self) -> int:
        return self.job_concurrency or max(1, self.worker_count // 2)

    @property
    def queue_size(self) -> int:
        return self.max_queue or 4 * self.worker_count


OPTIONS = {f.name: f for f in dataclasses.fields(Settings)}


def _convert(name: str, value: Any, source: str) -> Any:
    if name not in OPTIONS:
        raise ConfigError(f"unknown option {name!r} ({source})")
    if value is None:
        return OPTIONS[name].default
    try:
        return OPTIONS[name].metadata["convert"](value)
    except (ValueError, TypeError, ProxyError) as e:
        reason = e.reason if isinstance(e, ProxyError) else str(e)
        raise ConfigError(f"bad value for option {name!r} ({source}): {reason}") from None


def parse_flags(argv: Sequence[str]) -> list[tuple[str, str]]:
    """`--name=value`, `--name value` or a bare boolean `--name`, in order."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            raise ConfigError(usage())
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"unexpected argument {arg!r}; options look like --name=value")
        name, sep, value = arg[2:].partition("=")
        name = name.replace("-", "_")
        if not sep:
            if name in OPTIONS and OPTIONS[name].type in ("bool", bool):
                value = "true"
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise ConfigError(f"option {name!r} needs a value")
        pairs.append((name, value))
        i += 1
    return pairs


def read_config_file(path: str) -> dict[str, Any]:
    """Run a Python config file and keep its plain lowercase variables."""
    try:
        namespace = runpy.run_path(path)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except Exception as e:  # the operator's file: report it in one line
        raise ConfigError(f"cannot read config file {path}: {type(e).__name__}: {e}") from None
    return {
        name: value for name, value in namespace.items()
        if not name.startswith("_")
        and not isinstance(value, (types.ModuleType, types.FunctionType, type))
    }


def load(argv: Sequence[str] = (), **overrides: Any) -> Settings:
    """Build Settings from defaults, then --config's file, then the flags in order."""
    flags = parse_flags(argv)
    values: dict[str, Any] = {}
    config_path = None
    for name, value in flags:
        _convert(name, value, "command line")  # fail on unknown flags before reading files
        if name == "config":
            config_path = value
    if config_path:
        for name, value in read_config_file(config_path).items():
            values[name] = _convert(name, value, f"config file {config_path}")
    for name, value in flags:
        values[name] = _convert(name, value, "command line")
    for name, value in overrides.items():
        values[name] = _convert(name, value, "argument")
    settings = Settings(**values)
    if settings.jobs and not settings.job_key:
        raise ConfigError("option 'job_key' is required when jobs is on: every job request is signed with it")
    if settings.store_dir and settings.store_url:
        raise ConfigError("options 'store_dir' and 'store_url' are both set: the store is on disk or on S3")
    if settings.store and not settings.store_token:
        raise ConfigError("option 'store_token' is required with a store: uploads and deletes need it")
    if settings.store_signed_reads and not settings.client_key:
        raise ConfigError("option 'store_signed_reads' needs client_key to sign with")
    return settings


def usage() -> str:
    lines = ["usage: imgproxy [--name=value ...]", "options:"]
    for f in dataclasses.fields(Settings):
        default = ("set" if f.default else "unset") if f.metadata["secret"] else _shown(f.default)
        lines.append(f"  --{f.name:<24} {f.metadata['help']} (default: {default})")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    """A default in the form a user writes it (flags and config files take these)."""
    if value is None or value == ():
        return "unset"
    if isinstance(value, tuple) and len(value) == 4 and all(isinstance(v, int) for v in value):
        r, g, b, a = value  # a colour: ARGB hex, as bg= takes it
        return f"{a:02x}{r:02x}{g:02x}{b:02x}"
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, float) for v in value):
        names = {ratios: name for name, ratios in POSITIONS.items()}
        return names.get(value, f"{value[0]:g},{value[1]:g}")
    if isinstance(value, tuple) and isinstance(value[0], tuple) and len(value[0]) == 4:  # variants
        return ";".join(f"{name}:{size}:{(fmt or '').lower()}:{quality or ''}".rstrip(":")
                        for name, size, fmt, quality in value)
    if isinstance(value, tuple) and isinstance(value[0], tuple):  # presets
        return ";".join(f"{name}:{query}" for name, query in value)
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)
