"""The lower bound for bench_model_server: a bare Starlette handler doing the same work
(JSON decode, numpy dot product, JSON encode) with no model server around it."""

from __future__ import annotations

import sys

import numpy as np
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

W = np.arange(10, dtype=np.float32) / 10.0


async def predict(request: Request) -> Response:
    body = orjson.loads(await request.body())
    x = np.asarray(body["instances"], dtype=np.float32)
    return Response(orjson.dumps({"predictions": (x @ W).tolist()}),
                    media_type="application/json")


app = Starlette(routes=[Route("/v1/models/bare:predict", predict, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools", loop="uvloop",
                access_log=False, log_level="warning")
