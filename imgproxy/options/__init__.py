"""Options: image parameters by their query names, whatever the front-end, into a Plan.

`query.py` reads Pilbox's query string; `build.py` turns any mapping of those
names (a query, a path, a JSON job) into a Plan; `values.py` parses one value.
"""
