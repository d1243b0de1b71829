"""The one ``pkg_resources`` function ``tritonclient.utils.shared_memory`` calls, for
environments whose setuptools (81 and later) no longer ships ``pkg_resources``. Only on the
examples' path when the real module is missing."""

from __future__ import annotations

from importlib.resources import files


def resource_filename(package: str, name: str) -> str:
    return str(files(package) / name)
