"""Pure image code (no I/O, no Tornado): decode -> operations -> encode.

`pipeline.process(data, plan)` is the one entry point; see pipeline.py.
"""
