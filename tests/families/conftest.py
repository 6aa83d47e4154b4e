import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: training curves and timings do not depend on how busy the cores are."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
