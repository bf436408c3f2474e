import torch, torch.nn as nn, sys, time
sys.argv=['x','--arch',sys.argv[1],'--w',*sys.argv[2:]]
exec(open('tune.py').read().split('tt=0; t90=None')[0])
perm=torch.randperm(N)
def step(s):
    x,y=batch(perm[s*a.bs:(s+1)*a.bs])
    with ac(): loss=crit(model(x).float(),y)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step()
for s in range(15): step(s)
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU]) as pr:
    for s in range(15,35): step(s)
print(pr.key_averages().table(sort_by='self_cpu_time_total', row_limit=25))
