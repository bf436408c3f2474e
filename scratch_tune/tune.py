import gzip, time, argparse, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
p = argparse.ArgumentParser()
p.add_argument('--arch', default='a'); p.add_argument('--w', type=int, nargs='+', default=[32,64,128])
p.add_argument('--bs', type=int, default=256); p.add_argument('--epochs', type=int, default=8)
p.add_argument('--lr', type=float, default=0.1); p.add_argument('--wd', type=float, default=5e-4)
p.add_argument('--opt', default='sgd'); p.add_argument('--bf16', type=int, default=1)
p.add_argument('--cl', type=int, default=1); p.add_argument('--flip', type=int, default=1)
p.add_argument('--shift', type=int, default=0); p.add_argument('--ls', type=float, default=0.1)
p.add_argument('--seed', type=int, default=0); p.add_argument('--bench', type=int, default=0)
p.add_argument('--drop', type=float, default=0.0); p.add_argument('--pct', type=float, default=0.25)
p.add_argument('--evalevery', type=int, default=1)
a = p.parse_args()
torch.manual_seed(a.seed)
D='/usr/share/datasets/fashion-mnist/'
def li(f): return torch.from_numpy(np.frombuffer(gzip.open(D+f).read(),np.uint8,offset=16).reshape(-1,1,28,28).copy())
def ll(f): return torch.from_numpy(np.frombuffer(gzip.open(D+f).read(),np.uint8,offset=8).astype(np.int64))
Xtr,Ytr,Xte,Yte = li('train-images-idx3-ubyte.gz'),ll('train-labels-idx1-ubyte.gz'),li('t10k-images-idx3-ubyte.gz'),ll('t10k-labels-idx1-ubyte.gz')
MEAN,STD=0.2860,0.3530
def norm(x): return (x.float()/255.-MEAN)/STD

def cbr(i,o): return [nn.Conv2d(i,o,3,padding=1,bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
class Net(nn.Module):
    def __init__(self, arch, w, drop):
        super().__init__()
        if arch=='a':   # c1 @28, pool, c2 @14, pool, c3 @7, pool, fc
            L = cbr(1,w[0])+[nn.MaxPool2d(2)]+cbr(w[0],w[1])+[nn.MaxPool2d(2)]+cbr(w[1],w[2])+[nn.MaxPool2d(2)]
            L += [nn.Flatten(), nn.Dropout(drop), nn.Linear(w[2]*9,10)]
        elif arch=='b': # c1@28, c2@28 pool, c3@14 pool, c4@7 GAP
            L = cbr(1,w[0])+cbr(w[0],w[1])+[nn.MaxPool2d(2)]+cbr(w[1],w[2])+[nn.MaxPool2d(2)]+cbr(w[2],w[3])+[nn.MaxPool2d(2)]
            L += [nn.Flatten(), nn.Dropout(drop), nn.Linear(w[3]*9,10)]
        elif arch=='c': # c1@28 pool, c2 c3 @14 pool, c4 c5 @7 pool fc
            L = cbr(1,w[0])+[nn.MaxPool2d(2)]+cbr(w[0],w[1])+cbr(w[1],w[1])+[nn.MaxPool2d(2)]+cbr(w[1],w[2])+cbr(w[2],w[2])+[nn.MaxPool2d(2)]
            L += [nn.Flatten(), nn.Dropout(drop), nn.Linear(w[2]*9,10)]
        elif arch=='d': # c1@28, c2@28 pool, c3 c4 @14 pool, c5 @7 pool fc
            L = cbr(1,w[0])+cbr(w[0],w[1])+[nn.MaxPool2d(2)]+cbr(w[1],w[2])+cbr(w[2],w[2])+[nn.MaxPool2d(2)]+cbr(w[2],w[3])+[nn.MaxPool2d(2)]
            L += [nn.Flatten(), nn.Dropout(drop), nn.Linear(w[3]*9,10)]
        self.f = nn.Sequential(*L)
    def forward(self,x): return self.f(x)

model = Net(a.arch, a.w, a.drop)
mf = torch.channels_last if a.cl else torch.contiguous_format
model = model.to(memory_format=mf)
print('params', sum(p.numel() for p in model.parameters()))
N=len(Xtr); steps=N//a.bs
if a.opt=='sgd': opt=torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, nesterov=True, weight_decay=a.wd)
else: opt=torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.wd)
sched=torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps*a.epochs, pct_start=a.pct)
crit=nn.CrossEntropyLoss(label_smoothing=a.ls)
ac = lambda: torch.autocast('cpu', dtype=torch.bfloat16, enabled=bool(a.bf16))
Xte_n = norm(Xte).contiguous(memory_format=mf)
def evaluate():
    model.eval(); c=0; cf=0
    with torch.no_grad(), ac():
        for i in range(0,len(Xte),1000):
            x=Xte_n[i:i+1000]; o=model(x).float(); o2=o+model(x.flip(3)).float()
            c+=(o.argmax(1)==Yte[i:i+1000]).sum().item(); cf+=(o2.argmax(1)==Yte[i:i+1000]).sum().item()
    model.train(); return c/len(Xte), cf/len(Xte)
def batch(idx):
    x = norm(Xtr[idx])
    if a.flip:
        m = torch.rand(len(idx),1,1,1)<0.5; x = torch.where(m, x.flip(3), x)
    if a.shift:
        s=a.shift; xp=F.pad(x,(s,s,s,s),value=-MEAN/STD)
        dx,dy = torch.randint(0,2*s+1,(2,)).tolist()  # per-batch shift (cheap)
        x = xp[:,:,dy:dy+28,dx:dx+28]
    return x.contiguous(memory_format=mf), Ytr[idx]
tt=0; t90=None
for ep in range(a.epochs):
    perm=torch.randperm(N); t0=time.perf_counter(); c0=time.process_time()
    for s in range(steps):
        x,y=batch(perm[s*a.bs:(s+1)*a.bs])
        with ac(): loss=crit(model(x).float(),y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step()
        if a.bench and s==10: tb=time.perf_counter()
        if a.bench and s==a.bench+10:
            dt=time.perf_counter()-tb; print(f'bench {a.bench*a.bs/dt:.0f} ex/s -> epoch est {N/(a.bench*a.bs/dt):.1f}s'); raise SystemExit
    dt=time.perf_counter()-t0; tt+=dt; cr=(time.process_time()-c0)/dt
    if a.evalevery and ((ep+1)%a.evalevery==0 or ep==a.epochs-1):
        acc,accf=evaluate()
        if t90 is None and acc>=0.9: t90=tt
        print(f'ep {ep+1} ep_s {dt:.1f} train_s {tt:.1f} ex/s {steps*a.bs/dt:.0f} cpu/wall {cr:.2f} loss {loss.item():.3f} acc {acc:.4f} flipTTA {accf:.4f}', flush=True)
print(f'FINAL seed {a.seed} train_s {tt:.1f} acc {acc:.4f} tta {accf:.4f} t90 {t90}')
