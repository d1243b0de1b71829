"""REST: KServe v1 and Open Inference Protocol (v2) over one ASGI app; see ``build_app``."""

from tureen.transports.rest.app import RestApp, build_app

__all__ = ["RestApp", "build_app"]
