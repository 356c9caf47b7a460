import csv,math,sys,collections
T=1000
betas=[1e-4+(0.02-1e-4)*i/(T-1) for i in range(T)]
ab=[1.0];acc=1.0
for b in betas: acc*=1-b; ab.append(acc)
snr=lambda t: ab[t]/(1-ab[t]) if t>0 else float('inf')
def q_of(kl):
    if kl<=0: return 0
    return min(255,int(round(4*math.log2(1+kl))))
def klhat(q): return 2**(q/4)-1
rows=list(csv.DictReader(open(sys.argv[1])))
imgs=collections.defaultdict(list)
for r in rows: imgs[r['img']].append(r)
def cost(deltas):
    # adaptive model like the codec: prior 0.25^|d| mass 2 + counts
    prior={};
    Z=sum(0.25**abs(d) for d in range(-255,256))
    cnt=collections.Counter(); tot=0.0; n=0
    for i,d in enumerate(deltas):
        w=0.25**abs(d)/Z*2+cnt[d]; tot+=-math.log2(w/(2+max(n-1,0)) if i>0 else 0.25**abs(d)/Z)
        if i>0: cnt[d]+=1
        n+=1
    return tot
for mode in ('prev','snr'):
    tot=0
    for k,rs in imgs.items():
        rs=[r for r in rs if int(r['t_after'])>0]
        prev=0; ds=[]; prevkl=None
        for i,r in enumerate(rs):
            q=q_of(float(r['kl_bits']))
            tb,ta=int(r['t_before']),int(r['t_after'])
            if mode=='prev' or i==0: pred=prev
            else:
                ptb,pta=int(rs[i-1]['t_before']),int(rs[i-1]['t_after'])
                ratio=(snr(ta)-snr(tb))/(snr(pta)-snr(ptb))
                pred=q_of(klhat(prev)*ratio)
            ds.append(q-pred); prev=q
        tot+=cost(ds)
    print(mode, round(tot/len(imgs),1),'bits/image')
