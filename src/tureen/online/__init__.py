"""Online: low-latency feature storage and retrieval."""
