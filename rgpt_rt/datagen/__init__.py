"""`python -m rgpt_rt.datagen`: the region-caption pipeline (implemented in rgpt_rt/data/captions/);
`python -m rgpt_rt.datagen.bench`: its throughput in three modes on the synthetic world."""
