import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: results and timings do not depend on how busy the machine's cores are."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
