"""Live wiring the domains share: outputs and dead letters, keyed and record agents,
live rules, the worker's watermarks, notifications and the alert index.

Above the app (these modules register agents, tables and topics on it) and below the
domains' agents; faust's internals are not used here, only through :mod:`fraudapp.engine`.
"""
