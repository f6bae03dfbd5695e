"""`prepare_models`: the conversion is faithful and deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from lockstep.errors import ConfigError
from lockstep_inference import prepare_models
from lockstep_inference._prepare import _package_dir, charlm_reference
from tests.inference.conftest import needs_real_models

pytestmark = pytest.mark.unit


@needs_real_models
def test_charlm_onnx_matches_pokepy_forward_pass(model_repo: Path) -> None:
    pkg = _package_dir("pokepy", "pokepy-generator")
    sess = ort.InferenceSession(
        str(model_repo / "charlm" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    context = rng.integers(0, 27, size=(16, 8)).astype(np.int64)
    (logits,) = sess.run(["logits"], {"context": context})
    np.testing.assert_allclose(logits, charlm_reference(pkg, context), rtol=1e-4, atol=1e-4)


@needs_real_models
def test_prepare_is_deterministic(tmp_path: Path, model_repo: Path) -> None:
    models = prepare_models(tmp_path, ["charlm", "minilm"])
    assert [m.name for m in models] == ["charlm", "minilm"]
    for m in models:
        assert (tmp_path / m.name / "model.onnx").read_bytes() == (
            model_repo / m.name / "model.onnx"
        ).read_bytes()
    minilm = next(m for m in models if m.name == "minilm")
    assert (
        minilm.version == "sha256:8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
    )


def test_unknown_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown model source"):
        prepare_models(tmp_path, ["gpt5"])
