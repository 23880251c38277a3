"""fraudapp: real-time fraud detection on Kafka streams."""
