import numpy as np, sys
rng = np.random.default_rng(0)
def run(kl_bits, L, boost=1.0, trials=400):
    s = np.sqrt(2*kl_bits*np.log(2))
    sb = s*boost
    N = 1<<L
    us=[]; js=[]
    for t in range(trials):
        u = rng.standard_normal(N).astype(np.float32)
        T = np.cumsum(rng.exponential(size=N))
        sc = sb*u - np.log(T)
        j = int(np.argmax(sc)); us.append(u[j]); js.append(j)
    us=np.array(us); js=np.array(js)
    # info carried ~ the true-target log-ratio at the selected point: s*u - s^2/2 (nats) mean
    return s, us.mean(), us.var(), np.mean(np.log2(js+1))
for kl in [4,8,12,16]:
    for L in [kl+3, kl+5]:
        if L>17: continue
        for boost in [1.0, 1.1, 1.2]:
            s,m,v,lj = run(kl, int(L), boost, trials=300 if L>14 else 1000)
            print(f"kl {kl:2d} L {L:2d} boost {boost:.2f}: s {s:.3f} mean u* {m:.3f} (def {m-s:+.3f}) var {v:.3f} E log2(j+1) {lj:.2f}", flush=True)
