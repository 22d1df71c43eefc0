"""Run every chapter the way Colab runs it from its badge, and fail if one stops.

Usage: python tools/check_colab.py [--reuse-venv] [CHAPTER.ipynb ...]

What Colab gives a chapter opened from its badge, reproduced here:
- a Python with Colab's preinstalled stack (torch, torchvision, matplotlib, numpy, jupyter) and neither nbdev nor
  this package: a separate virtual environment (`$VIT_COLAB_VENV`, default /tmp/vit_nbdev-colab-venv);
- the notebook alone in an empty working directory;
- `google.colab` imported when the kernel starts: a stand-in module, imported from an IPython startup file, so that
  the chapter's Colab cell runs. Its `pip install` is pointed at this checkout (`VIT_NBDEV_SOURCE`) and the
  committed experiments and files that chapters 1, 6-10 download at the checkout's files (`VIT_NBDEV_FILES`), since
  CI has no network;
  CIFAR-10 comes from `$VIT_DATA_DIR` when it is set (Colab downloads it).
Every cell runs, `#| slow` and `#| eval: false` ones too (Colab's "Run all"), with `IN_TEST=1`, which the chapters
read to train on small samples. Each chapter starts without the package: it is uninstalled before each one.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLAB_STACK = ['torch', 'torchvision', 'matplotlib', 'numpy', 'jupyter']
STARTUP = "import sys; sys.path.insert(0, {standin!r}); import google.colab  # Colab imports it at kernel start\n"


def run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def make_venv(venv: Path, reuse: bool) -> Path:
    "A virtual environment holding Colab's preinstalled stack and nothing of this project."
    python = venv / 'bin' / 'python'
    if reuse and python.exists(): return python
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, '-m', 'venv', venv])
    for args in (['--upgrade', 'pip'], COLAB_STACK):   # pip's output only when it fails
        r = subprocess.run([str(python), '-m', 'pip', 'install', '-q', *args], capture_output=True, text=True)
        if r.returncode: sys.exit(f'colab: pip install {" ".join(args)} failed:\n{r.stdout}{r.stderr}')
    return python


def colab_env(work: Path) -> dict:
    "The environment of a Colab kernel: the stand-in `google.colab` imported at start, installs from this checkout."
    standin = work / 'standin'
    (standin / 'google' / 'colab').mkdir(parents=True)
    # `google` stays a namespace package, as in Colab: `google.protobuf` (onnx needs it) installs beside it
    (standin / 'google' / 'colab' / '__init__.py').write_text(
        '"A stand-in for Colab\'s module (tools/check_colab.py)."\n')
    startup = work / 'ipython' / 'profile_default' / 'startup'
    startup.mkdir(parents=True)
    (startup / '00-colab.py').write_text(STARTUP.format(standin=str(standin)))
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV', 'MPLBACKEND', 'IPYTHONDIR')}
    env.update(IPYTHONDIR=str(work / 'ipython'), IN_TEST='1', VIT_NBDEV_SOURCE=ROOT.as_uri(),
               VIT_NBDEV_FILES=ROOT.as_uri(), PYTHONUNBUFFERED='1')
    return env


def run_chapter(python: Path, nb: Path, work: Path, env: dict) -> float:
    "Execute `nb` alone in an empty folder with a fresh install; return the seconds it took (raises if a cell fails)."
    run([python, '-m', 'pip', 'uninstall', '-q', '-y', 'vit_nbdev', 'nbdev'], stderr=subprocess.DEVNULL)
    folder = work / nb.stem
    folder.mkdir()
    shutil.copy(nb, folder / nb.name)
    start = time.perf_counter()
    run([python, '-m', 'jupyter', 'nbconvert', '--to', 'notebook', '--execute', '--output', 'executed.ipynb',
         '--ExecutePreprocessor.timeout=1800', '--ExecutePreprocessor.kernel_name=python3', nb.name],
        cwd=folder, env={**env, 'PATH': f"{python.parent}{os.pathsep}{env.get('PATH', '')}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - start


def main(argv: list) -> int:
    reuse = '--reuse-venv' in argv
    chapters = ([ROOT / 'nbs' / a for a in argv if a.endswith('.ipynb')]
                or sorted((ROOT / 'nbs').glob('[0-9][0-9]*_*.ipynb')))
    t0 = time.perf_counter()
    python = make_venv(Path(os.environ.get('VIT_COLAB_VENV', '/tmp/vit_nbdev-colab-venv')), reuse)
    print(f'colab: environment ready in {time.perf_counter() - t0:.0f} s ({", ".join(COLAB_STACK)})', flush=True)
    failed = []
    with tempfile.TemporaryDirectory(prefix='colab-') as tmp:
        work = Path(tmp); env = colab_env(work)
        for nb in chapters:
            try: print(f'colab: {nb.name} ran top to bottom in {run_chapter(python, nb, work, env):.0f} s', flush=True)
            except subprocess.CalledProcessError as e:
                failed.append(nb.name)
                tail = re.sub(r'\x1b\[[0-9;]*m', '', e.stderr or '').strip().splitlines()[-25:]   # without colours
                print(f'colab: {nb.name} FAILED\n' + '\n'.join(tail), flush=True)
    print(f'colab: {len(chapters) - len(failed)} passed, {len(failed)} failed ({time.perf_counter() - t0:.0f} s)')
    return 1 if failed else 0


if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
