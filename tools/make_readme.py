"""Write README.md from nbs/index.ipynb (what `nbdev_readme` does, without quarto).

Usage: python tools/make_readme.py [--check | --quickstart N]
--check exits 1, without writing, if README.md differs from what index.ipynb gives.
--quickstart N prints the README's N-th quickstart command (1: install and train, 2: install and test), for CI.
"""
import re, sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'

def _hidden(cell) -> bool:
    "nbdev's `#| hide` directive: the cell is left out of the docs and the README."
    return cell.cell_type == 'code' and re.match(r'\s*#\s*\|\s*hide\b', cell.source) is not None

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
    body, _ = MarkdownExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    note = '<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n\n'
    return note + _relink(body).strip() + '\n'

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
        print('README.md matches nbs/index.ipynb')
    else:
        readme.write_text(text, encoding='utf-8')
