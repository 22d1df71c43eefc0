"""Check the processed notebooks that quarto would render (run `nbdev_proc_nbs` first; quarto itself is not needed).

Usage: python tools/check_site.py
Fails (exit 1) when a processed page holds an error output, an image a page shows is not found from that page,
or the sidebar does not list every chapter in order.
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS, PROC = ROOT / 'nbs', ROOT / '_proc'


def error_outputs(nb: dict) -> list:
    "The error outputs of a notebook, and stderr streams that hold a traceback."
    found = []
    for i, cell in enumerate(nb['cells']):
        for out in cell.get('outputs', []):
            text = ''.join(out.get('text', '')) if out.get('output_type') == 'stream' else ''
            if out.get('output_type') == 'error' or 'Traceback (most recent call last)' in text:
                found.append(f"cell {i}: {out.get('ename', 'stderr')}")
    return found


def image_links(nb: dict) -> list:
    "Local image paths that the markdown cells of a notebook show (`![..](path)` and `<img src=..>`)."
    links = []
    for cell in nb['cells']:
        if cell['cell_type'] != 'markdown': continue
        text = ''.join(cell['source'])
        links += re.findall(r'!\[[^\]]*\]\(([^)\s]+)', text) + re.findall(r'<img[^>]*src="([^"]+)"', text)
    return [u for u in links if not re.match(r'^(?:[a-z]+:|/|#|data:)', u)]


def sidebar_pages() -> list:
    "The notebooks `sidebar.yml` lists, in order."
    return re.findall(r'-\s+([\w./-]+\.ipynb)', (NBS / 'sidebar.yml').read_text())


def main() -> int:
    problems = []
    pages = sorted(PROC.glob('*.ipynb'))
    if not pages: problems.append(f'no processed notebooks in {PROC}: run nbdev_proc_nbs first')
    for page in pages:
        nb = json.loads(page.read_text())
        problems += [f'{page.name}: error output in {e}' for e in error_outputs(nb)]
        problems += [f'{page.name}: image {u} not found' for u in image_links(nb) if not (page.parent / u).is_file()]
    chapters = sorted(p.name for p in NBS.glob('[0-9][0-9]*_*.ipynb'))
    listed = sidebar_pages()
    if listed != ['index.ipynb'] + chapters:
        problems.append(f'sidebar.yml lists {listed}, expected index.ipynb then the chapters in order: {chapters}')
    for p in problems: print(f'check_site: {p}', file=sys.stderr)
    if not problems: print(f'check_site: {len(pages)} processed pages, no error output, every image found, '
                           f'sidebar lists the {len(chapters)} chapters in order')
    return 1 if problems else 0


if __name__ == '__main__': sys.exit(main())
