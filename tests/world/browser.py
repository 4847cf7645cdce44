"""Open a batch's page (a local file) in Debian's chromium, headless, driven by Selenium
through Debian's chromedriver, and print what a person would see, as one JSON document:
the cards, each thumbnail's decoded width, the failed cards' text, the timeline's bars,
whether the filter buttons work. Saves a screenshot of the whole page.

    browser.py PAGE.html SCREENSHOT.png

Nothing is downloaded: the browser and the driver are the system's (SE_OFFLINE), and the page
itself must need nothing from the network (every request but the file is counted)."""

import json
import os
import sys

os.environ["SE_OFFLINE"] = "true"

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = os.environ.get("RTB_WORLD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("RTB_WORLD_CHROMEDRIVER", "/usr/bin/chromedriver")


def main(page, screenshot):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        # No traffic anywhere but the file: a page that asked for a font or a script would
        # show as a failed request below.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        driver.get("file://" + os.path.abspath(page))
        driver.execute_script("return document.readyState")
        report = driver.execute_script(
            """
            const cards = [...document.querySelectorAll('article.card')];
            const imgs = [...document.querySelectorAll('article.card img')];
            return {
              title: document.title,
              cards: cards.map(c => ({id: c.id.replace(/^job-/, ''), classes: c.className,
                                       text: c.innerText})),
              imgs: imgs.map(i => ({alt: i.alt, complete: i.complete,
                                     naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight})),
              bars: [...document.querySelectorAll('svg.timeline rect.bar')].map(b => ({
                job: b.getAttribute('data-job'), cls: b.getAttribute('class'),
                width: b.getBoundingClientRect().width})),
              rows: [...document.querySelectorAll('svg.timeline text.instance')].map(t => t.textContent),
              hbars: document.querySelectorAll('svg.histogram rect.hbar').length,
              filters_visible: !document.querySelector('nav.filters').hidden,
              resources: performance.getEntriesByType('resource').map(r => r.name),
            };
            """
        )
        # The filter buttons: "failed" leaves only the failed cards shown.
        driver.find_element(By.CSS_SELECTOR, "nav.filters button[data-filter=failed]").click()
        report["shown_when_failed"] = driver.execute_script(
            "return [...document.querySelectorAll('article.card')]"
            ".filter(c => c.offsetParent !== null).map(c => c.id.replace(/^job-/, ''))"
        )
        driver.find_element(By.CSS_SELECTOR, "nav.filters button[data-filter=all]").click()
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(max(height + 40, 600), 6000))
        driver.save_screenshot(screenshot)
        report["requests"] = [
            json.loads(e["message"])["message"]["params"]["request"]["url"]
            for e in driver.get_log("performance")
            if json.loads(e["message"])["message"]["method"] == "Network.requestWillBeSent"
        ]
        report["browser"] = driver.capabilities.get("browserVersion")
    finally:
        driver.quit()
    print(json.dumps(report))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: browser.py PAGE.html SCREENSHOT.png")
    main(sys.argv[1], sys.argv[2])
