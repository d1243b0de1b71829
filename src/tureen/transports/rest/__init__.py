"""REST: KServe v1 and Open Inference Protocol (v2) in one app (native handlers for tureen's
HTTP/1.1 server, ASGI for any other); see ``build_app``."""

from tureen.transports.rest.app import RestApp, build_app

__all__ = ["RestApp", "build_app"]
