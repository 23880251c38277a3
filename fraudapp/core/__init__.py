"""Pure rules and state: what fraudapp decides, with no faust, Kafka or RocksDB in it.

Everything here runs the same in a worker, in a replay and in a unit test; the
layers contract in ``.importlinter`` keeps faust, aiokafka, mode, rocksdict and the
rooms above (engine, app, live, domains' agents, web, cli) out of it.
"""
