"""torch.distributed on the CPU: 2 gloo processes launched by torchrun, on 127.0.0.1 only."""

import os
import socket
import subprocess
import sys

import torch

from gancore.train import Trainer
from gancore.train import checkpoint as ckpt
from tests.train.trainhelpers import parameters, tiny_args, tiny_config, use_sgd

_RANK_SCRIPT = """
import sys, torch
from tests.train.trainhelpers import tiny_config, parameters, use_sgd
from gancore.train import Trainer
trainer = use_sgd(Trainer(tiny_config("wgan-gp", *{sets!r}, steps={steps}, batch_size={batch})))
torch.save(parameters(trainer), sys.argv[1] + f"/start{{trainer.dist.rank}}.pt")
trainer.fit()
torch.save(parameters(trainer), sys.argv[1] + f"/rank{{trainer.dist.rank}}.pt")
trainer.close()
# no DDP wrapper may outlive the group: it would keep gloo's threads alive until interpreter exit
assert not any(isinstance(m, torch.nn.parallel.DistributedDataParallel) for m in trainer.wrapped.values())
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, cwd, check=True):
    # sys.path holds the repository root (the tests package's parent) and gancore
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), OMP_NUM_THREADS="1",
               GLOO_SOCKET_IFNAME="lo")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    # WGAN-GP: a gradient penalty under DDP, G every n_critic=2 steps, two accumulation rounds (no_sync).
    # SGD: DDP averages gradients over ranks; a wrong factor there would show in SGD's steps, not in Adam's.
    sets, steps, batch = ["train.accumulate=2", "model.lr_g=0.05", "model.lr_d=0.05"], 5, 16
    script = tmp_path / "rank.py"
    script.write_text(_RANK_SCRIPT.format(sets=sets, steps=steps, batch=batch))
    _torchrun([str(script), str(tmp_path)], cwd=tmp_path)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    start = torch.load(tmp_path / "start0.pt", weights_only=True)
    single = use_sgd(Trainer(tiny_config("wgan-gp", *sets, steps=steps, batch_size=batch)))
    assert all(torch.equal(v, start[k]) for k, v in parameters(single).items())  # the same initial weights
    single.fit()
    one = parameters(single)
    for key in one:
        assert torch.equal(rank0[key], rank1[key]), key  # every rank holds the same parameters
        assert torch.allclose(rank0[key] - start[key], one[key] - start[key], rtol=1e-4, atol=1e-7), key


def test_torchrun_cli_run_writes_one_run_folder(tmp_path):
    # The last step is a checkpoint step: every rank must skip the final checkpoint alike (rank 1
    # used to enter its collectives alone and crash), so torchrun exits 0 only if every rank did.
    run = tmp_path / "run"
    _torchrun(["-m", "gancore.train", "train", "dcgan", "--out", str(run), "--steps", "4",
               "--batch-size", "8", "--set", "log.checkpoint_every=2", *tiny_args()], cwd=tmp_path)
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(str(run)))
    assert state["step"] == 4 and len(state["rng"]["per_rank"]) == 2
    assert [s for s, _ in ckpt.list_checkpoints(str(run))] == [2, 4]
    assert len((run / "log.jsonl").read_text().splitlines()) == 1  # rank 0 alone logs
    assert (run / "samples" / "final.png").exists()


_HANG_SCRIPT = """
import sys, time
from tests.train.trainhelpers import tiny_config
from gancore.train import Trainer
from gancore.train.distributed import PeerError

class HangOnRankOne:  # a rank that stops answering, as a SIGSTOPped one does
    every = 2
    def __call__(self, trainer):
        if trainer.dist.rank == 1:
            time.sleep(600)

trainer = Trainer(tiny_config("wgan-gp", "train.dist_timeout=2", steps=50, batch_size=8), hooks=[HangOnRankOne()])
try:
    trainer.fit()
except PeerError as err:
    print(f"PEER ERROR {err}", file=sys.stderr)
    sys.exit(3)
"""


def test_a_rank_that_stops_answering_stops_the_others_with_its_rank_named(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(_HANG_SCRIPT)
    done = _torchrun([str(script)], cwd=tmp_path, check=False)
    assert done.returncode != 0
    assert "PEER ERROR rank 0: rank(s) 1 did not answer within train.dist_timeout=2 s" in done.stderr, \
        done.stderr[-3000:]
