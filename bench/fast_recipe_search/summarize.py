"""Markdown table of every results/*.json: final/best val accuracy (raw, raw+TTA, EMA, EMA+TTA), median train s/epoch."""
import json, glob, statistics, sys

def row(r):
    e = r['epochs']; c = r['config']
    ev = [x for x in e if 'raw' in x]
    def fin(k, m='acc'):
        x = ev[-1].get(k, {}).get(m) if ev else None
        return f"{100 * x:.2f}" if x is not None else '–'
    def best(k):
        v = [x[k]['acc'] for x in ev if k in x]
        return f"{100 * max(v):.2f}" if v else '–'
    ts = [x['train_s'] for x in e]
    if not ev: return f"| {r['name']} | {len(e)}/{c['epochs']} (stopped, never evaluated) | – | – | – | – | – | {e[-1]['train_loss']:.3f} | {statistics.median(ts):.0f} |"
    es = [x['eval_s'] for x in ev if 'eval_s' in x]
    return (f"| {r['name']} | {len(e)}/{c['epochs']}{'' if r.get('done') else ' (running)'} | {fin('raw')} / {best('raw')} | {fin('raw', 'acc_tta')} | "
            f"{fin('ema')} / {best('ema')} | {fin('ema', 'acc_tta')} | {ev[-1]['raw']['loss']:.3f} | {e[-1]['train_loss']:.3f} | "
            f"{statistics.median(ts):.0f} (min {min(ts):.0f}) |")

print("| run | epochs | val acc raw final / best | raw + flip TTA (final) | EMA final / best | EMA + TTA (final) | val loss raw | train loss | train s/epoch median (min) |")
print("|---|---|---|---|---|---|---|---|---|")
import os
for f in sorted(glob.glob('results/*.json'), key=os.path.getmtime):
    r = json.load(open(f))
    if 'epochs' in r and r['epochs']: print(row(r))
