"""The ``fraudapp`` command line: demo, topics, producers, rules, replay, labels and
cases, and the embedded brokers and worker processes the demo and the tests start.

``fraudapp.cli.main:main`` is the entry point; ``python -m fraudapp.cli`` and
``python -m fraudapp`` run it too.
"""
