"""The job API (imgserve's): POST a JSON job, get 202 at once; the server fetches the
source, renders each output in the worker pool and uploads it to its destination.

spec.py reads and checks a job; queue.py keeps jobs durably (SQLite by default,
Redis for several nodes); runner.py runs them with leases and retries;
destinations.py uploads results; templates.py expands destination names.
"""
