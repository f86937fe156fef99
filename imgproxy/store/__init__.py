"""The upload store: upload an image once, get an ID, ask for it by ID in named variants
and sizes (huImages' `240x160` and `75x75!`).

ids.py makes IDs; sizes.py is the geometry the server and the Python helpers share;
records.py the image record and its JSON; metadata*.py where records live (SQLite on
one node, Redis for several); layout.py the blob keys, made from an ID only;
service.py the store's steps, on the render service and a BlobStore; client.py the
helpers for application code.
"""
