# mypy: ignore-errors
"""Run by test_kserve.py inside a separate venv holding tritonclient[grpc] (protobuf 6).

Usage: python triton_client_script.py ADDRESS ADMIN_TOKEN OPERATOR_TOKEN VIEWER_TOKEN
Prints one JSON object with what the upstream client saw.
"""

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

address, admin, operator, viewer = sys.argv[1:5]
client = grpcclient.InferenceServerClient(url=address)


def h(token):
    return {"authorization": f"Bearer {token}"}


out = {}
out["live"] = client.is_server_live(headers=h(viewer))
out["ready"] = client.is_server_ready(headers=h(viewer))
meta = client.get_server_metadata(headers=h(viewer), as_json=True)
out["server_name"] = meta["name"]
out["extensions"] = meta.get("extensions", [])
client.load_model("tiny_add", headers=h(admin))
out["model_ready"] = client.is_model_ready("tiny_add", headers=h(viewer))
out["live_no_token"] = client.is_server_live()  # probes carry no credential
mm = client.get_model_metadata("tiny_add", headers=h(viewer), as_json=True)
out["metadata"] = {
    "versions": mm["versions"],
    "platform": mm["platform"],
    "inputs": mm["inputs"],
    "outputs": mm["outputs"],
}
x = np.arange(8, dtype=np.float32).reshape(2, 4)
inp = grpcclient.InferInput("x", [2, 4], "FP32")
inp.set_data_from_numpy(x)
res = client.infer(
    "tiny_add", [inp], headers=h(operator), outputs=[grpcclient.InferRequestedOutput("y")]
)
out["y"] = res.as_numpy("y").tolist()
resp = res.get_response(as_json=True)
out["model_version"] = resp["model_version"]
out["provider"] = resp["parameters"]["lockstep_provider"]["string_param"]
index = client.get_model_repository_index(headers=h(viewer), as_json=True)
out["index"] = index.get("models", [])
errors = {}
for label, call in [
    ("viewer_infer", lambda: client.infer("tiny_add", [inp], headers=h(viewer))),
    ("no_token", lambda: client.is_model_ready("tiny_add")),  # liveness itself is public
    ("unknown_model", lambda: client.infer("missing", [inp], headers=h(operator))),
    ("operator_load", lambda: client.load_model("tiny_add", headers=h(operator))),
]:
    try:
        call()
        errors[label] = None
    except InferenceServerException as exc:
        errors[label] = exc.status()
bad = grpcclient.InferInput("x", [2, 4], "FP64")
bad.set_data_from_numpy(x.astype(np.float64))
try:
    client.infer("tiny_add", [bad], headers=h(operator))
except InferenceServerException as exc:
    errors["wrong_dtype"] = exc.status()
out["errors"] = errors
client.unload_model("tiny_add", headers=h(admin))
out["ready_after_unload"] = client.is_model_ready("tiny_add", headers=h(viewer))
client.close()
print(json.dumps(out))
