import torch, time
from wslgraph import GraphTemplate
from wslgraph.zoo import siren, small_cnn
def t(fn, k=20):
    fn(); torch.cuda.synchronize(); s=time.perf_counter()
    for _ in range(k): fn()
    torch.cuda.synchronize(); return (time.perf_counter()-s)/k*1e3
N=10000
for f in (siren, small_cnn):
    tpl=GraphTemplate.from_module(f()); L=tpl.layout
    p=torch.randn(N,tpl.num_params,device="cuda"); st=tpl._structure_on(p.device)
    off=torch.arange(N,device="cuda")*L.num_nodes
    print(f.__name__, "total", t(lambda: tpl.batch(p)))
    print(" edge_index", t(lambda: (st["edge_index"].unsqueeze(1)+off.view(1,N,1)).view(2,-1)))
    print(" edge_type", t(lambda: st["edge_type"].repeat(N)))
    print(" meta4", 4*t(lambda: st["layer"].repeat(N)), "mask", t(lambda: st["x_mask"].repeat(N,1)))
    print(" batchvec", t(lambda: torch.arange(N,device="cuda").repeat_interleave(L.num_nodes)))
    x=p.new_zeros(N,L.num_nodes,5); e=p.new_empty(N,L.num_edges,*L.kernel_grid)
    def feats():
        for gv,pv in tpl._views(x,e,p,zero_padding=True): gv.copy_(pv)
    print(" feats", t(feats))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        tpl.batch(p); torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12))
