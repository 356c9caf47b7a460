import gzip, sys, math, csv, collections, glob, os
def zipf_cost(L, b, j, cache={}):
    k=(L,b)
    if k not in cache:
        s=0.65+1.3/(b*0.25+0.48); n=1<<L
        w=sum(math.exp(-s*math.log(i)) for i in range(1,n+1))
        cache[k]=(s, math.log2(w))
    s,ln=cache[k]
    return s*math.log2(j+1)+ln
def octave(j): return int(math.floor(math.log2(j+1)))
def osize(o,L): return min((1<<(o+1))-1,1<<L)-((1<<o)-1)
for f in sorted(glob.glob(sys.argv[1] if len(sys.argv)>1 else 'runs/s9idx/*.idx.gz')):
    rows=[]
    for line in gzip.open(f,'rt'):
        if line.startswith('IDX'):
            _,L,b,j,kl=line.split(); rows.append((int(L),int(b),int(j),float(kl)))
    if not rows: continue
    csvf=f.replace('.idx.gz','.csv'); r=list(csv.DictReader(open(csvf)))[0]
    n_img=int(r['images']); dims=3072*n_img
    z=sum(zipf_cost(L,b,j) for L,b,j,_ in rows)
    cells=collections.defaultdict(lambda: collections.Counter())
    for L,b,j,_ in rows: cells[(L,b//4)][octave(j)]+=1
    e=0.0
    for L,b,j,_ in rows:
        c=cells[(L,b//4)]; tot=sum(c.values()); o=octave(j)
        p=(c[o]+0.5)/(tot+0.5*(L+1))
        e+=-math.log2(p)+math.log2(osize(o,L))
    act=float(r['actual_bpd']); ideal=float(r['ideal_bpd'])
    print(f"{os.path.basename(csvf):36s} chunks/img {len(rows)/n_img:7.1f} actual {act:.4f} ideal {ideal:.4f} zipf {z/len(rows):6.3f} b/chunk (index_bpd {z/dims:.4f} vs csv {float(r['index_bpd']):.4f}) octave-emp {e/len(rows):6.3f} -> projected actual {act-(z-e)/dims:.4f}  meanKL {sum(k for *_,k in rows)/len(rows):.2f} proj {float(r['shift_proj_mean']):+.3f}/{float(r['shift_proj_var']):.3f} cpu {r['encode_cpu_s_per_image']}")
