import numpy as np
cache={}
def logZ(s,Lv):
    k=(round(s,5),Lv)
    if k not in cache:
        j=np.arange(1,(1<<Lv)+1,dtype=np.float64); cache[k]=np.log2(np.sum(j**-s))
    return cache[k]
def load(path):
    import gzip
    rows=[l.split() for l in gzip.open(path, "rt") if l.startswith("IDX")]
    return (np.array([int(r[1]) for r in rows]), np.array([int(r[2]) for r in rows]), np.array([int(r[3]) for r in rows]))
def cost(d, sfun):
    L,B,J=d; tot=0.0
    for Lv in np.unique(L):
        m=L==Lv
        for b in np.unique(B[m]):
            mm=m&(B==b); s=sfun(b/4.0)
            tot+=np.sum(s*np.log2(J[mm]+1.0))+mm.sum()*logZ(s,int(Lv))
    return tot/len(J)
for path in ['idx_t12.txt.gz','idx_k1000.txt.gz','idx_t10.txt.gz']:
    d=load(path)
    print(path, "cur %.4f"%cost(d,lambda k:1+1/(k+0.48)))
    for c0,c1,c2 in [(0.65,1.3,0.48),(0.7,1.0,0.48),(0.6,1.5,0.48),(0.65,1.0,0.2),(0.7,0.5,0.48),(0.65,1.6,0.8),(0.7,1.2,0.48),(0.7,1.5,0.6),(0.75,1.0,0.48)]:
        print("  c0 %.2f c1 %.2f c2 %.2f: %.4f"%(c0,c1,c2,cost(d,lambda k:c0+c1/(k+c2))))
