"""gancore's FID InceptionV3 against pytorch-fid's, with the same (random) weights.

Runs only where pytorch-fid imports. With this project's pinned CPU torch it does not: the registry's
torchvision build for torch 2.13 fails to load its operators against the CPU wheel ("operator
torchvision::nms does not exist"), so CI skips this test. Where both import, no weights are downloaded:
pytorch-fid's loader is handed a state_dict written here under the pt_inception keys.
"""

import pytest
import torch

from gancore.metrics import load_fid_inception
from gancore.metrics.inception import InceptionV3FID

try:
    from pytorch_fid import inception as pytorch_fid_inception
except Exception as err:  # ImportError, or torchvision failing to load its operators (RuntimeError)
    pytest.skip(f"pytorch-fid is not importable here: {type(err).__name__}: {err}", allow_module_level=True)


def test_features_match_pytorch_fid_with_the_same_weights(tmp_path, monkeypatch):
    torch.manual_seed(0)
    state = InceptionV3FID().state_dict()
    path = tmp_path / "pt_inception.pth"
    torch.save(state, path)
    ours = load_fid_inception(path)
    monkeypatch.setattr(pytorch_fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: state)
    theirs = pytorch_fid_inception.InceptionV3([3]).eval()  # block 3: the 2048-d pool features
    images = torch.rand(3, 3, 64, 80, generator=torch.Generator().manual_seed(1))  # in [0, 1]
    with torch.no_grad():
        expected = theirs(images)[0].flatten(1).double()
        got = ours(images * 2 - 1).double()  # gancore takes [-1, 1]
    assert got.shape == expected.shape == (3, 2048)
    assert (got - expected).norm() / expected.norm() < 1e-5
