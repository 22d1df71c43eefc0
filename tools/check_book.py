"""Check the book's shape: what a reader and a developer rely on, beyond the tests in the chapters.

Usage: python tools/check_book.py

- the design card's chapter names exist (`nbs/00_patch_embedding.ipynb` ... `nbs/06_attention_inspection.ipynb`);
- every chapter imports from the package only what earlier chapters export (imports point backwards);
- no module is longer than 450 lines (nbdev's `_modidx.py` aside);
- in the reading path (chapters 00-06 and their lettered companions) no code cell is longer than 40 lines;
- no cell calls `show_doc` more than once (only a cell's last output is shown);
- no stored output holds an absolute path or progress-bar HTML;
- every code cell parses as Python (IPython's `%` and `!` lines aside);
- the card's chapters (`nbs/00_*` ... `nbs/06_*`) carry the ViT alone: no code cell touches process groups or ranks,
  RNG-state capture, the GradScaler, argument parsing, downloads or caching, atomic file writing or mocks
  (`PLUMBING`), and each chapter has at most 3 `test_fail(` calls (the other refusals are tested in a companion);
- chapter 5 calls `.backward()` in a loop of its own (a code cell that is not exported to the library) before the
  first cell that constructs a `Trainer(`.
"""
import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS, LIB = ROOT / 'nbs', ROOT / 'vit_nbdev'
CARD = ('00_patch_embedding', '06_attention_inspection')
PLUMBING = re.compile(r'\bdist\.|broadcast_object_list|all_gather|_rank_world|get_rng_state|set_rng_state|GradScaler'
                      r'|argparse|add_flags|sys\.argv|urllib|download_|committed_file|committed_experiment|os\.replace'
                      r'|fsync|tempfile|mock\.|monkeypatch')
MAX_TEST_FAIL = 3
EXPORT = re.compile(r'^#\|\s*export', re.M)                # a cell whose code goes into the library
ABS_PATH = re.compile(r'(?<![\w.:/])/(tmp|work|home|root|Users|private|var/folders)/')


def cells(nb: Path) -> list: return json.loads(nb.read_text())['cells']
def source(c) -> str: return ''.join(c['source'])


def module_of(nb: Path):
    "The module a chapter exports to (its `#| default_exp`), or None."
    for c in cells(nb):
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', source(c), re.M)
        if m: return m.group(1)


def parse(src: str) -> ast.Module:
    "A code cell's syntax tree, IPython's `%` and `!` lines left out; raises `SyntaxError` if it does not parse."
    return ast.parse('\n'.join(line for line in src.splitlines() if not line.lstrip().startswith(('%', '!'))))


def imported_modules(tree: ast.Module) -> set:
    "The `vit_nbdev` modules a cell's code imports."
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('vit_nbdev.'):
            found.add(node.module.split('.')[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split('.')[1] for a in node.names if a.name.startswith('vit_nbdev.')}
    return found


def card_problems(nb: Path) -> list:
    "A card chapter's plumbing cells and excess `test_fail` calls; for chapter 5, `.backward()` before `Trainer(`."
    code = [(i, source(c)) for i, c in enumerate(cells(nb)) if c['cell_type'] == 'code']
    problems = [f'{nb.name} cell {i}: plumbing in a card chapter ({PLUMBING.search(src).group(0)!r})'
                for i, src in code if PLUMBING.search(src)]
    n = sum(src.count('test_fail(') for _, src in code)
    if n > MAX_TEST_FAIL:
        problems.append(f'{nb.name}: {n} test_fail calls (a card chapter keeps at most {MAX_TEST_FAIL}; '
                        'the rest belong in a companion)')
    if nb.name.startswith('05_'):
        trees, code_of = [(i, _tree(src)) for i, src in code], dict(code)
        backward = next((i for i, t in trees if t and _calls_backward(t) and not EXPORT.search(code_of[i])), None)
        trainer = next((i for i, t in trees if t and any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                                                         and n.func.id == 'Trainer' for n in ast.walk(t))), None)
        if trainer is not None and (backward is None or backward > trainer):
            problems.append(f'{nb.name}: no code cell of the chapter (not exported) calls .backward() before cell '
                            f'{trainer}, the first to construct a Trainer(')
    return problems


def _tree(src: str):
    "A cell's syntax tree, or None if it does not parse (reported on its own)."
    try: return parse(src)
    except SyntaxError: return None


def _calls_backward(tree: ast.Module) -> bool:
    "Whether the cell's code calls `.backward()` (a loop written in the chapter, at any depth)."
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == 'backward'
               for n in ast.walk(tree))


def main() -> int:
    chapters = sorted(NBS.glob('[0-9][0-9]*_*.ipynb'))
    problems = [f'nbs/{n}.ipynb is missing: the design card names it'
                for n in CARD if not (NBS / f'{n}.ipynb').exists()]
    owner = {module_of(nb): nb.stem for nb in chapters if module_of(nb)}
    def later(mod, nb): return f'{nb.name}: imports vit_nbdev.{mod} from the later chapter {owner[mod]}'
    for nb in chapters:
        reading = re.match(r'0[0-6][a-z]?_', nb.name)
        for i, c in enumerate(cells(nb)):
            src = source(c)
            if c['cell_type'] != 'code': continue
            try: tree = parse(src)
            except SyntaxError as e:
                problems.append(f'{nb.name} cell {i}: does not parse as Python ({e.msg}, line {e.lineno})'); continue
            for mod in imported_modules(tree):
                if mod not in owner: problems.append(f'{nb.name}: imports vit_nbdev.{mod}, which no chapter exports')
                elif owner[mod] > nb.stem: problems.append(later(mod, nb))
            n = len([line for line in src.splitlines() if line.strip()])
            if reading and n > 40: problems.append(f'{nb.name} cell {i}: {n} lines (reading path: at most 40)')
            if len(re.findall(r'^\s*show_doc\(', src, re.M)) > 1:
                problems.append(f'{nb.name} cell {i}: several show_doc calls, only the last output is shown')
            for o in c.get('outputs', []):
                data = o.get('data', {})
                text = ''.join(o.get('text', '')) + ''.join(''.join(v) for k, v in data.items()
                                                             if k.startswith('text/'))
                if ABS_PATH.search(text): problems.append(f'{nb.name} cell {i}: an absolute path in an output'); break
                if 'progress::-webkit' in text or '<progress' in text:
                    problems.append(f'{nb.name} cell {i}: progress-bar HTML in its output'); break
    for nb in chapters:
        if re.match(r'0[0-6]_', nb.name): problems += card_problems(nb)
    for p in sorted(LIB.glob('*.py')):
        n = len(p.read_text().splitlines())
        if p.name != '_modidx.py' and n > 450: problems.append(f'vit_nbdev/{p.name}: {n} lines (at most 450)')
    for line in problems: print(f'book: {line}')
    if problems: return 1
    print(f'book: {len(chapters)} chapters, imports point backwards, cells and modules within their limits')
    return 0


if __name__ == '__main__':
    sys.exit(main())
