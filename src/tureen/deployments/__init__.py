"""Deployments: declared in the registry, served by ``tureen serve``, exported to KServe.

- ``Deployments.for_repo(repo)``: create / list / get / start / stop / update / delete specs.
- ``DeploymentSpec``: one deployment (model version, canary, logging, batching, idle unload).
"""

from tureen.deployments.service import Deployments
from tureen.deployments.spec import Batching, Canary, DeploymentSpec

__all__ = ["Batching", "Canary", "DeploymentSpec", "Deployments"]
