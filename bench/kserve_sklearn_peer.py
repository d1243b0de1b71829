"""KServe 0.21 peer for bench_model_server: the scikit-learn model behind KServe's own data plane.

Run with KServe's interpreter (``/work/peers/kserve/bin/python``), never imported by tureen.
It does what KServe's sklearnserver does for a joblib model: v1 ``instances`` and OIP v2 /
gRPC tensors in, ``predict`` out (as tureen's sklearn runtime), one worker. The benchmark
passes ``--enable_latency_logging False`` so KServe is measured at its fastest.

    python kserve_sklearn_peer.py --model_name lr --http_port P --grpc_port G MODEL.joblib
"""

import sys

import joblib
import kserve
import numpy as np
from kserve.utils.utils import get_predict_input, get_predict_response


class SKLearnModel(kserve.Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.clf = joblib.load(path)
        self.ready = True

    def predict(self, payload, headers=None):  # type: ignore[no-untyped-def]
        x = np.asarray(get_predict_input(payload), dtype=np.float32)
        return get_predict_response(payload, self.clf.predict(x), self.name)


if __name__ == "__main__":
    args, _ = kserve.model_server.parser.parse_known_args()
    kserve.ModelServer(workers=1).start([SKLearnModel(args.model_name, sys.argv[-1])])
