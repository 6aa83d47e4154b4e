"""Registered benchmark suites: name -> module.

A suite module defines:
  BASELINE: str          the contender every speed-up is measured against (e.g. "eager")
  ALLOC_SENSITIVE: bool  True when results depend on the CPU allocator setting (run under both)
  run(ctx: BenchContext) -> Iterable[dict]
      rows with keys suite, case, contender, ms (plus optional ms_p10/ms_p90, bytes, peak_mb, note).
and optionally count(ctx) -> int, the number of rows run() yields (for the progress bar).
"""

SUITES = {
    "instance_norm": "gancore.bench.suites.instance_norm",
    "batch_norm": "gancore.bench.suites.batch_norm",
    "gradient_penalty": "gancore.bench.suites.gradient_penalty",
    "patchgan": "gancore.bench.suites.patchgan",
    "fid": "gancore.bench.suites.fid",
    "trainer": "gancore.bench.suites.trainer",
    "families": "gancore.bench.suites.families",
    "fuse": "gancore.bench.suites.fuse",
    "pix2pixhd_memory": "gancore.bench.suites.pix2pixhd_memory",
    "seqgan": "gancore.bench.suites.seqgan",
}
