"""Remove progress bars from a notebook's stored outputs: fastprogress draws them as HTML while a cell runs (a
`<style>` block and a `<progress>` element, or an empty placeholder once the bar is gone), which the site and the
README would otherwise show as a frozen bar or a blank block.

Usage: python tools/strip_progress.py NOTEBOOK.ipynb ...   (tools/execute_notebooks.sh runs it after executing)
"""
import json
import sys
from pathlib import Path


def is_progress(output: dict) -> bool:
    "Whether a stored output is a progress bar or the empty HTML it leaves behind."
    if output.get('output_type') not in ('display_data', 'update_display_data'): return False
    data = output.get('data', {})
    if 'text/html' not in data: return False
    html = ''.join(data['text/html'])
    return ('<progress' in html or 'progress::-webkit' in html or not html.strip()
            or set(data) <= {'text/html', 'text/plain'} and not ''.join(data.get('text/plain', '')).strip(' \n\'"'))


def strip(path: Path) -> int:
    "Drop the progress outputs of every code cell of `path`, in place; return how many were dropped."
    nb = json.loads(path.read_text())
    n = 0
    for cell in nb['cells']:
        kept = [o for o in cell.get('outputs', []) if not is_progress(o)]
        n += len(cell.get('outputs', [])) - len(kept)
        if 'outputs' in cell: cell['outputs'] = kept
    if n: path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return n


if __name__ == '__main__':
    for p in sys.argv[1:]: print(f'{p}: {strip(Path(p))} progress output(s) removed')
