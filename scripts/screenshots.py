"""Screenshots of every app page over a runs folder (the README's, of the example run).

    .venv/bin/python scripts/screenshots.py                 # runs/ -> docs/screenshots/
    .venv/bin/python scripts/screenshots.py RUNS_DIR OUT_DIR

Serves ``trace2skill app`` over RUNS_DIR, opens each page in headless Chromium (Debian's;
``scripts/install_system_deps.sh`` installs it), waits until the page script has finished
and its text has stopped changing, and saves ``OUT_DIR/<page>.png``. Exits non-zero when a
page shows a Streamlit exception.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import DevTools, chromium, serve_app  # noqa: E402
from toolkit.app.main import PAGES  # noqa: E402

RUNNING = "document.querySelector('[data-testid=\"stStatusWidget\"]') !== null"


def settle(browser: DevTools, timeout: float = 90) -> str:
    """Wait until the page script is done and the text is the same twice in a row."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        time.sleep(1.0)
        text = browser.text()
        if text and text == last and not browser.evaluate(RUNNING):
            break
        last = text
    time.sleep(2.0)  # charts draw after the text is there
    return browser.text()


def main() -> int:
    """Take the screenshots; 1 when a page failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_dir", nargs="?", type=Path, default=ROOT / "runs")
    parser.add_argument("out_dir", nargs="?", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    with (
        tempfile.TemporaryDirectory(prefix="t2s-shots-") as profile,
        serve_app(args.runs_dir.resolve()) as url,
        chromium(Path(profile)) as browser,
    ):
        for i, (_, title, path, _) in enumerate(PAGES):
            browser.call("Page.navigate", url=f"{url}/{'' if i == 0 else path}")
            text = settle(browser)
            errors = browser.exceptions()
            shot = browser.call("Page.captureScreenshot", format="png")
            out = args.out_dir / f"{path}.png"
            out.write_bytes(base64.b64decode(shot["data"]))
            status = "EXCEPTION" if errors else "ok"
            print(f"{status:9} {title:20} {out} ({out.stat().st_size:,} bytes)")
            if errors or title not in text:
                failed += 1
                print(f"          {errors or f'the page never showed {title!r}'}"[:300])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
