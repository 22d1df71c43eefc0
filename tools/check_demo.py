"""Check `vit_demo` as its users meet it: a server process, Gradio's own client, and a headless browser.

Usage: python tools/check_demo.py [--exp-name fast30] [--out-dir DIR] [--screenshot PATH] [--no-browser]

1. `vit_demo --exp-name NAME --port P` is started as a process (127.0.0.1 only) and waited for.
2. `gradio_client` sends a CIFAR-10 test image saved as PNG to the app's `/analyse` endpoint: the top class and the
   probabilities must be those of `vit_predict` (its printed top-5, and `predict` with the experiment's predictor to
   1e-4). Then a text file renamed `.jpg`: a message saying it is not an image, no traceback. Then the image again:
   the app still answers, with the same result.
3. A headless Chromium (Debian packages `chromium` and `chromium-driver`, driven by selenium) loads the page, uploads
   the image and waits until the predicted class shows; `--screenshot PATH` saves the page (for the chapter and the
   README). Without the browser (or selenium) the check fails, saying what to install; `--no-browser` skips this part
   on purpose.
The server is stopped at the end whatever happens. Every wait is bounded. Exits 1 on a failure.
"""
import argparse
import configparser
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def command(name: str) -> list:
    "The console script `name` next to this Python (an installed package), else its function (settings.ini) via `-c`."
    script = Path(sys.executable).parent / name
    if script.is_file(): return [str(script)]
    ini = configparser.ConfigParser(); ini.read(ROOT / 'settings.ini')
    module, function = dict(s.split('=') for s in ini['DEFAULT']['console_scripts'].split())[name].split(':')
    return [sys.executable, '-c', f'import sys; from {module} import {function}; sys.exit({function}())']


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> float:
    "Wait until `url` answers (seconds taken); fail if the server exits or the time runs out."
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None: fail(f'vit_demo exited with {proc.returncode}:\n{log.read_text()}')
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200: return time.perf_counter() - start
        except OSError: time.sleep(0.5)
    fail(f'vit_demo did not answer at {url} within {timeout:.0f} s:\n{log.read_text()}')


def fail(msg: str):
    print(f'FAIL: demo check: {msg}', file=sys.stderr, flush=True)
    raise SystemExit(1)


def stop(proc: subprocess.Popen):
    "Stop the server and whatever it started (its own process group)."
    if proc.poll() is not None: return
    os.killpg(proc.pid, signal.SIGTERM)
    try: proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL); proc.wait(timeout=15)


def vit_predict_top(exp_name: str, out_dir: str, image: Path) -> list:
    "`vit_predict --top-k 5 IMAGE` as printed: [(class, probability)], best first."
    run = subprocess.run([*command('vit_predict'), '--exp-name', exp_name, '--out-dir', out_dir, '--device', 'cpu',
                          '--top-k', '5', str(image)], capture_output=True, text=True, timeout=300)
    if run.returncode: fail(f'vit_predict failed:\n{run.stderr}')
    line = run.stdout.strip().splitlines()[-1].split(': ', 1)[1]
    return [(m.group(1), float(m.group(2)) / 100) for m in re.finditer(r'(\S+) ([\d.]+)%', line)]


def client_result(result) -> tuple:
    "The app's answer through gradio_client: ([(class, probability)], picture path or None, message)."
    label, picture, message = result
    top = [(c['label'], c['confidence']) for c in (label or {}).get('confidences', [])]
    return top, picture, message or ''


def check_browser(url: str, image: Path, expected: str, screenshot: str = None):
    "Load the page in headless Chromium, upload `image`, wait for `expected` to show; fail when no browser can run."
    chromium = next(filter(None, map(shutil.which, ('chromium', 'chromium-browser', 'google-chrome'))), None)
    driver_path = shutil.which('chromedriver')
    if not chromium or not driver_path:
        missing = 'chromium' if not chromium else 'chromedriver'
        fail(f"browser: no {missing} on PATH (Debian: apt-get install chromium chromium-driver; or --no-browser)")
    try:
        from selenium import webdriver
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError: fail('browser: selenium is not installed (pip install "vit_nbdev[demo]"; or --no-browser)')
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--window-size=1400,1250',
                '--force-device-scale-factor=1'):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(url)
        wait = WebDriverWait(driver, 60)
        upload = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'input[type=file]'))[0]
        upload.send_keys(str(image))
        wait.until(lambda d: expected in d.find_element(By.ID, 'message').text)
        # the picture of the maps: an <img> in the output image component, loaded
        wait.until(lambda d: d.execute_script(
            "return [...document.querySelectorAll('img')].some(i => i.complete && i.naturalWidth > 600)"))
        shown = driver.find_element(By.ID, 'message').text
        if screenshot:
            time.sleep(1)                                            # let the last transitions finish
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
        print(f'browser: the page shows "{shown.splitlines()[0]}" after the upload'
              + (f'; screenshot {screenshot}' if screenshot else ''))
    finally: driver.quit()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--exp-name', default='fast30')
    p.add_argument('--out-dir', default=str(ROOT / 'experiments'))
    p.add_argument('--screenshot', help='save the page after the upload to this PNG file')
    p.add_argument('--no-browser', action='store_true', help='skip the browser part')
    a = p.parse_args(argv)
    import torch
    from gradio_client import Client, handle_file
    from PIL import Image

    from vit_nbdev.data import load_cifar10
    from vit_nbdev.evaluation import experiment_predictor
    from vit_nbdev.experiments import load_experiment
    from vit_nbdev.inspection import predict
    torch.set_num_threads(1)

    tmp = Path(tempfile.mkdtemp(prefix='check_demo-'))
    images, labels, classes = load_cifar10(train=False)
    image = tmp / f'test0_{classes[int(labels[0])]}.png'
    Image.fromarray(images[0].permute(1, 2, 0).numpy()).save(image)
    not_an_image = tmp / 'notes.jpg'
    not_an_image.write_text('a text file renamed .jpg\n')
    config, model, _ = load_experiment(a.exp_name, a.out_dir, device='cpu')
    _, probs = predict(model, image, predictor=experiment_predictor(config))
    reference = probs[0]                                             # (K,), what vit_predict computes
    printed = vit_predict_top(a.exp_name, a.out_dir, image)

    port = free_port(); url = f'http://127.0.0.1:{port}/'
    log = tmp / 'vit_demo.log'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'GRADIO_ANALYTICS_ENABLED': 'False', 'PYTHONUNBUFFERED': '1'}
    with open(log, 'w') as out:
        proc = subprocess.Popen([*command('vit_demo'), '--exp-name', a.exp_name, '--out-dir', a.out_dir,
                                 '--port', str(port), '--examples', '4', '--device', 'cpu'],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        started = wait_for(url, proc, log)
        print(f'server: vit_demo answered at {url} after {started:.1f} s')
        client = Client(url, verbose=False)
        def ask(path): return client_result(client.predict(handle_file(str(path)), 4, 1, api_name='/analyse'))

        top, picture, message = ask(image)
        if not top: fail(f'no classes for a real image; message: {message}')
        diff = max(abs(p - reference[classes.index(c)].item()) for c, p in top)
        if [c for c, _ in top] != [c for c, _ in printed]: fail(f'top-5 {top} differs from vit_predict\'s {printed}')
        if diff > 1e-4: fail(f'probabilities differ from predict()\'s by {diff:.1e} > 1e-4')
        if max(abs(p - q) for (_, p), (_, q) in zip(top, printed)) > 0.0005 + 1e-9:
            fail(f'probabilities {top} differ from vit_predict\'s printed {printed}')
        if not picture or not Path(picture).is_file(): fail('no attention picture came back')
        print(f'gradio_client: {image.name} -> {top[0][0]} {top[0][1]:.2%}, the same top-5 as vit_predict '
              f'(max |probability difference| {diff:.1e}); message: {message}')

        bad_top, bad_picture, bad_message = ask(not_an_image)
        if bad_top or bad_picture: fail(f'a text file gave classes {bad_top}')
        if 'is not an image file' not in bad_message or 'Traceback' in bad_message:
            fail(f'unclear message for a text file: {bad_message!r}')
        print(f'gradio_client: {not_an_image.name} (text) -> {bad_message}')

        n, start = 5, time.perf_counter()
        for _ in range(n): again = ask(image)
        per_image = (time.perf_counter() - start) / n
        if again[0] != top: fail(f'after the text file the app answered {again[0]}, before {top}')
        print(f'gradio_client: the app still answers ({again[0][0][0]}), {per_image * 1000:.0f} ms per image over HTTP')

        if a.no_browser: print('browser check skipped: --no-browser')
        else:
            try: check_browser(url, image, top[0][0], a.screenshot)
            except Exception as e: fail(f'browser: {type(e).__name__}: {str(e).strip().splitlines()[0]}')
        if proc.poll() is not None: fail(f'vit_demo stopped during the checks:\n{log.read_text()}')
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    print('demo check: passed')
    return 0


if __name__ == '__main__':
    sys.exit(main())
