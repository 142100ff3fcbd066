"""The AWS side: stores, queues, topic, channels and clients that implement logic's Protocols."""
