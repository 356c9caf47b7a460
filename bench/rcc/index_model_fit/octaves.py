import numpy as np, sys
import gzip; rows=[l.split() for l in gzip.open(sys.argv[1], "rt") if l.startswith("IDX")]
L=np.array([int(r[1]) for r in rows]); B=np.array([int(r[2]) for r in rows]); J=np.array([int(r[3]) for r in rows])
kl=B/4.0; o=np.floor(np.log2(J+1)).astype(int); x=np.log2(J+1.0)
for lo,hi in [(0,1),(1,2),(2,4),(4,6),(6,8),(8,10),(10,11),(11,12),(12,13),(13,14),(14,16),(16,20)]:
    m=(kl>=lo)&(kl<hi)
    if m.sum()<30: continue
    h=np.bincount(o[m],minlength=18)[:18]/m.sum()
    print(f"KL[{lo},{hi}) n={m.sum():5d} meanKL {kl[m].mean():5.2f} L {np.median(L[m]):4.1f} mean log2(j+1) {x[m].mean():5.2f} sd {x[m].std():4.2f} P(j=0) {np.mean(J[m]==0):.3f}  oct:", " ".join(f"{v:.2f}" for v in h[:17]))
