"""Delivery: what happens around a render so that the same work is not done twice.

keys.py names a result; cache.py keeps results in a storage backend; coalesce.py
shares one render between identical requests in flight; negotiate.py picks the
format for fmt=auto; conditional.py answers and forwards conditional requests.
"""
