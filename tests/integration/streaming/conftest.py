from tests.integration.streaming.broker import broker

__all__ = ["broker"]
