"""Inference logging: what was served, asynchronously and bounded, to Parquet, Kafka or HTTP.

A server builds one ``InferenceLogger`` per deployment and, per request, calls
``logger.log(InferenceRecord(...))`` (non-blocking, no I/O); on shutdown
``await logger.aclose()`` flushes everything. ``read_log`` reads a Parquet log back;
``training_set`` and ``skew`` close the loop.
"""

from tureen.inference_log.logger import InferenceLogger, LoggerStats, QueuePolicy
from tureen.inference_log.protocol import LogSink, SinkWriteError
from tureen.inference_log.record import InferenceRecord, LoggedRequest, LogMode, normalize
from tureen.inference_log.sinks import sink_from_url

__all__ = [
    "InferenceLogger",
    "InferenceRecord",
    "LogMode",
    "LogSink",
    "LoggedRequest",
    "LoggerStats",
    "QueuePolicy",
    "SinkWriteError",
    "normalize",
    "sink_from_url",
]
