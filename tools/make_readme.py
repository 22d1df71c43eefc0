"""Write README.md from nbs/index.ipynb (what `nbdev_readme` does, without quarto).

Usage: python tools/make_readme.py [--check | --quickstart N]
A code cell marked `#| echo: false` shows only its output, as on the site: index.ipynb's results and speed tables are
such cells, which read the committed experiments and bench/results/*.json.
--check exits 1, without writing, if README.md differs from what index.ipynb gives, or if index.ipynb's stored
outputs differ from those of a fresh run of its code (a table left stale by a newly committed result).
--quickstart N prints the README's N-th quickstart command (1: install and train, 2: install and test), for CI.
"""
import copy
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import MarkdownExporter
from traitlets.config import Config

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'

def _hidden(cell) -> bool:
    "nbdev's `#| hide` directive: the cell is left out of the docs and the README."
    return cell.cell_type == 'code' and re.match(r'\s*#\s*\|\s*hide\b', cell.source) is not None

def _echo_false(cell) -> bool:
    "Quarto's `#| echo: false` directive: the cell's output is shown, its code is not."
    return cell.cell_type == 'code' and re.search(r'^\s*#\s*\|\s*echo:\s*false\s*$', cell.source, re.M) is not None

def _relink(md: str) -> str:
    "Make links relative to nbs/ work from the repository root."
    def fix(m):
        text, url = m.group(1), m.group(2)
        if re.match(r'^(?:[a-z]+:|/|#)', url): return m.group(0)
        return f'{text}(nbs/{url})'
    return re.sub(r'(!?\[[^\]]*\])\(([^)\s]+)\)', fix, md)

def render() -> str:
    nb = nbformat.read(NBS / 'index.ipynb', as_version=4)
    nb.cells = [c for c in nb.cells if not _hidden(c)]
    for c in nb.cells:
        if _echo_false(c): c.metadata['tags'] = [*c.metadata.get('tags', []), 'echo-false']
    config = Config({'TagRemovePreprocessor': {'enabled': True, 'remove_input_tags': ['echo-false']}})
    body, _ = MarkdownExporter(config=config, exclude_input_prompt=True,
                               exclude_output_prompt=True).from_notebook_node(nb)
    note = '<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n\n'
    return note + _relink(body).strip() + '\n'

def _outputs(cell) -> list:
    "A code cell's outputs as they are compared: kind, stream text and data, without counts or metadata."
    keys = ('output_type', 'name', 'text', 'data', 'ename', 'evalue')
    return [{k: o[k] for k in keys if k in o} for o in cell.outputs]

def stale_outputs() -> list:
    "Code cells of index.ipynb whose stored outputs differ from those of a fresh run of a copy, from nbs/."
    stored = nbformat.read(NBS / 'index.ipynb', as_version=4)
    fresh = copy.deepcopy(stored)
    NotebookClient(fresh, timeout=600, kernel_name='python3', resources={'metadata': {'path': str(NBS)}}).execute()
    return [i for i, (a, b) in enumerate(zip(stored.cells, fresh.cells))
            if a.cell_type == 'code' and _outputs(a) != _outputs(b)]

def quickstart(readme: str) -> list:
    "The commands of the README's quickstart: its `sh` code blocks, in order."
    section = readme.split('## Quickstart', 1)[1].split('\n## ', 1)[0]
    return [b.strip() for b in re.findall(r'```sh\n(.*?)```', section, flags=re.S)]

if __name__ == '__main__':
    text, readme = render(), ROOT / 'README.md'
    if '--quickstart' in sys.argv:
        print(quickstart(readme.read_text(encoding='utf-8'))[int(sys.argv[sys.argv.index('--quickstart') + 1]) - 1])
        sys.exit()
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text(encoding='utf-8') != text:
            sys.exit('README.md is out of date with nbs/index.ipynb: run `python tools/make_readme.py`')
        if stale := stale_outputs():
            sys.exit(f'nbs/index.ipynb: the stored outputs of cell(s) {stale} differ from a fresh run (a result was '
                     'committed or changed since): run `cd nbs && jupyter nbconvert --to notebook --execute --inplace '
                     'index.ipynb && nbdev_clean --fname index.ipynb && cd .. && python tools/make_readme.py`')
        print('README.md matches nbs/index.ipynb, whose stored outputs match a fresh run')
    else:
        readme.write_text(text, encoding='utf-8')
