# imgproxy configuration file: a Python file of plain variables.
# Start the server with:  imgproxy --config=/path/to/this/file
# Every option is listed with its default; uncomment what you change.
# Command-line flags (--name=value) override this file; lists may be Python
# lists or comma-separated strings. Unknown names stop start-up.

# --- server ---------------------------------------------------------------
# address = "127.0.0.1"        # interface to listen on ("0.0.0.0" for all)
# port = 8888                  # port to listen on
# debug = False                # log at debug level
# workers = 0                  # image worker processes; 0 = one per CPU core
# max_queue = 0                # tasks that may wait for a worker; 0 = 4 per worker.
#                              #   Past it requests get 503 + Retry-After at once.
# process_timeout = 10.0       # seconds a worker may spend on one image (then 504)
# worker_memory_limit = 1073741824  # address-space limit per worker (bytes); 0 = none
# config = None                # (flag only) path of this file

# --- security -------------------------------------------------------------
# client_name = None           # if set, requests must carry client=<name>
# client_key = []              # if set, requests must be signed (sig=); several
#                              #   keys are accepted, for key rotation
# allowed_hosts = []           # origin hosts allowed ("host" or "host:port");
#                              #   empty = any public host
# allowed_operations = ["noop", "region", "resize", "rotate"]
# max_operations = 10          # most operations in one request
# max_resize_width = 15000     # largest w
# max_resize_height = 15000    # largest h

# --- fetching the source --------------------------------------------------
# max_requests = 40            # most fetches in flight at once
# timeout = 10.0               # total seconds for one fetch
# connect_timeout = 3.0        # seconds to connect to the origin
# max_source_bytes = 20000000  # largest source accepted, in bytes (then 413)
# implicit_base_url = None     # e.g. "https://images.example.com/" lets url=/path.jpg
#                              #   and path URLs fetch from there (when origins is unset)
# origins = []                 # base URLs of /path sources: the master, then fallbacks
#                              #   asked in parallel when it says 404, fails or is slow
# origin_hedge_ms = 1000       # ms to wait for the master before asking fallbacks too
# ca_certs = None              # CA bundle (PEM) for https origins
# validate_cert = True         # verify the origin's TLS certificate
# proxy_host = None            # HTTP proxy for fetches
# proxy_port = None
# user_agent = None            # User-Agent sent to origins; None = "imgproxy/<version>"

# --- decoding -------------------------------------------------------------
# max_source_pixels = 50000000 # largest source (width x height), checked before decoding
# max_output_pixels = 50000000 # largest image any operation may produce
# input_formats = ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "AVIF"]  # accepted source formats

# --- replies --------------------------------------------------------------
# content_type_from_image = False  # kept for Pilbox configs: Content-Type always
#                                  #   names the format actually sent
# cache_control = None         # Cache-Control of successful replies; None = the origin's
# error_cache_control = "public, max-age=60"  # Cache-Control of error replies

# --- result cache (off unless cache_dir or cache_url is set) --------------
# cache_dir = None             # directory of a local filesystem cache
# cache_max_bytes = 1073741824 # its size; least recently used entries go first
# cache_url = None             # "redis://host:6379/0": one cache for several servers
# cache_ttl = 86400            # seconds a cached result is served; 0 = until evicted
# cache_max_entry_bytes = 10000000  # largest result stored in Redis

# --- image defaults (each query parameter overrides its default) ----------
# operation = "resize"         # op: default operation(s)
# mode = "crop"                # mode: adapt, clip, crop, fill, scale
# filter = "antialias"         # filter: nearest, bilinear, bicubic, antialias
# position = "center"          # pos: named, "x,y" ratios, or face
# background = "0fff"          # bg: RGB, RRGGBB, ARGB or AARRGGBB (alpha first)
# retain = 75                  # retain: percent kept by adapt before it fills
# expand = False               # expand: grow the canvas when rotating
# format = None                # fmt: jpeg, png, gif, webp, tiff, avif, or auto (by the
#                              #   Accept header); None = source format
# quality = 90                 # q: 1-99 or "keep" (JPEG, and formats without their own)
# quality_webp = 90            # quality of WebP output when q is not given
# quality_avif = 85            # quality of AVIF output when q is not given
# optimize = False             # opt
# progressive = False          # prog
# preserve_exif = False        # exif

# --- metadata and orientation ---------------------------------------------
# auto_orient = False          # turn images upright from their EXIF orientation
#                              #   (all 8, any format) before the operations;
#                              #   recommended unless URLs rely on Pilbox's sideways output
# strip_gps = True             # exif=1 keeps EXIF without GPS position data

# --- path URLs and presets (/220x220/photos/cat.jpg, /s220/photos/cat.jpg) ---
# presets = {}                 # e.g. {"s220": "w=220&h=220&mode=crop", "default": "q=80"}
# sizes = []                   # e.g. ["64x64", "64x64!", "220x220"]; empty = any size
# presets_only = False         # unsigned requests: only presets, listed sizes and fmt

# --- the job API (POST /jobs) ---------------------------------------------
# jobs = False                 # serve the job API; needs job_key
# job_key = None               # HMAC-SHA256 key that signs job requests (X-Signature)
# job_db = "imgproxy-state/jobs.sqlite3"  # SQLite file of the job queue (one node)
# job_queue_url = None         # "redis://host:6379/0": one queue for several nodes
# job_max_attempts = 5         # attempts of a job before it fails
# job_concurrency = 0          # worker slots jobs may take at once; 0 = half the workers
# job_lease_seconds = 60.0     # seconds a job is held before another runner may retry it
# job_retry_seconds = 1.0      # first retry delay; it doubles, with jitter

# --- cache of originals ---------------------------------------------------
# source_cache_bytes = 0       # memory for fetched originals; 0 = none
# source_cache_dir = None      # a directory for them on disk; None = none
# source_cache_dir_bytes = 1073741824  # its size, least recently used out first
# source_cache_ttl = 300       # seconds before an original is revalidated

# --- jobs (POST /jobs: fetch, render, upload) -----------------------------
# job_allowed_destinations = []  # URL prefixes jobs may upload to, e.g.
#                              #   ["https://uploads.example.com/images/", "ftp://ftp.example.com/in/"];
#                              #   empty = none. These hosts are trusted even on internal addresses.
# job_credentials = {}         # FTP passwords by "host" or "host:port", e.g. {"ftp.example.com": "s3cret"};
#                              #   the user name comes from the URL (ftp://bob@ftp.example.com/...)
# job_file_root = None         # file:// sources and destinations must be below this directory

# --- the upload store (POST /images; off unless store_dir or store_url is set) ---
# store_dir = None                 # directory of originals, variants and sizes (the embedded default)
# store_url = None                 # or "s3://bucket/prefix" (install with the s3 extra)
# store_s3_endpoint = None         # an S3-compatible server's URL; unset = AWS
# store_s3_region = None
# store_token = None               # required with a store: "Authorization: Bearer <token>" for writes
# store_db = "imgproxy-state/store.sqlite3"   # image records on one node
# store_meta_url = None            # "redis://host:6379/0": records shared by several nodes
# store_variants = {"thumbnail": {"size": "150x150", "format": "webp", "quality": 80}, "medium": {"size": "800x800", "format": "webp", "quality": 85}, "large": {"size": "1920x1920", "quality": 90}}
# store_sizes = ()                 # e.g. ("240x160", "75x75!"): others need a signature
# store_serve_original = True
# store_signed_reads = False       # True: every read by ID is signed like a path URL
# store_public_browsing = False    # True: listing, next, previous, random without the token
# max_upload_bytes = 20000000
