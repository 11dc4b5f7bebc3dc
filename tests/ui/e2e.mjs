// End-to-end test of kura's web UI in headless Chromium (Debian's), driven by playwright-core.
// Run by tests/ui_e2e.rs: node e2e.mjs <base-url> <screenshot-dir>, expectations as JSON in
// KURA_UI_E2E. Exits non-zero on the first failed check.
import { chromium } from 'playwright-core';
import path from 'node:path';

const [base, shots] = process.argv.slice(2);
const X = JSON.parse(process.env.KURA_UI_E2E);
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

let checks = 0;
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  checks++;
  console.log(`ok ${checks} - ${what}`);
}

async function shoot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: path.join(shots, `${name}-phone.png`), fullPage: true });
  // At phone width nothing may overflow the page sideways (tables scroll in their box).
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `${name}: no sideways overflow at phone width (${overflow}px)`);
  await page.setViewportSize(DESKTOP);
}

async function login(page, [user, pass]) {
  await page.goto(`${base}/ui/login`);
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', pass);
  await page.click('form.login button[type=submit]');
  await page.waitForURL(`${base}/ui/`);
  check((await page.textContent('header')).includes(`Signed in as ${user}`), `${user} signed in`);
}

const basic = ([u, p]) => 'Basic ' + Buffer.from(`${u}:${p}`).toString('base64');
const repoUrl = `${base}/ui/repo?name=${encodeURIComponent(X.repo)}`;

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  // --- admin, with JavaScript off: browsing and every action work without it ---
  const ctx = await browser.newContext({ viewport: DESKTOP, javaScriptEnabled: false });
  const page = await ctx.newPage();
  const resp = await page.goto(`${base}/ui/`);
  check(page.url() === `${base}/ui/login`, 'anonymous visitor is sent to the sign-in page');
  check(resp.status() === 200, 'sign-in page answers 200');
  const cookie = (await ctx.cookies()).find((c) => c.name === 'kura_ui');
  check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', 'session cookie is HttpOnly and SameSite=Strict');
  await shoot(page, 'login');
  // A wrong password is refused.
  await page.fill('input[name=user]', 'admin');
  await page.fill('input[name=password]', 'wrong');
  await page.click('form.login button[type=submit]');
  check((await page.textContent('.error')).includes('Wrong user name or password'), 'wrong password refused');
  check(!page.url().includes('wrong'), 'password never in the URL');
  await login(page, X.admin);

  // Keyboard: the first Tab reaches the skip link.
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement.textContent.trim()) === 'Skip to content', 'first Tab focuses the skip link');

  // Repositories → repository.
  const link = page.getByRole('link', { name: X.repo, exact: true });
  check(await link.count() === 1, 'repository listed');
  await shoot(page, 'repos');
  await page.fill('input[name=q]', 'no-such-thing');
  await page.click('form.search button');
  check((await page.textContent('main')).includes('No repositories match'), 'substring search filters');
  await page.goto(`${base}/ui/?prefix=team%2F`);
  await page.getByRole('link', { name: X.repo, exact: true }).click();
  await page.waitForURL(repoUrl);
  const v1 = page.locator(`tr[data-tag="${X.keepTag}"]`);
  check(await v1.count() === 1, 'tag v1 listed');
  const plats = await v1.locator('td').nth(4).textContent();
  check(X.platforms.every((p) => plats.includes(p)), `platforms of v1 shown: ${plats}`);
  check((await v1.locator('input.copy').inputValue()).endsWith(`/${X.repo}:${X.keepTag}`), 'pull command shown');
  check(!(await v1.locator('button.copybtn').isVisible()), 'without JS the pull command is a plain selectable field');
  await shoot(page, 'repo');

  // The index: platforms and the signature referrer.
  await v1.getByRole('link', { name: X.keepTag }).click();
  check((await page.textContent('h1')).trim() === X.index, 'index page shows its digest');
  const platText = await page.textContent('#platforms');
  check(X.platforms.every((p) => platText.includes(p)), 'index page lists both platforms');
  const group = page.locator(`section.refgroup[data-artifact-type="${X.sigType}"]`);
  check(await group.count() === 1, 'referrers grouped under the signature artifact type');
  const sigLink = group.locator('a');
  check((await sigLink.getAttribute('href')).includes(encodeURIComponent(X.signature)), 'signature referrer linked');
  await shoot(page, 'index');
  await sigLink.click();
  check((await page.textContent('h1')).trim() === X.signature, 'signature page opens');
  check(await page.getByRole('link', { name: 'the manifest this refers to' }).count() === 1, 'signature links its subject');

  // The amd64 image: layer sizes, config.
  await page.goto(`${base}/ui/manifest?name=${encodeURIComponent(X.repo)}&ref=${encodeURIComponent(X.amd64)}`);
  const sizes = await page.locator('#layers td.bytes').allTextContents();
  check(JSON.stringify(sizes.map(Number)) === JSON.stringify(X.layerSizes), `layer sizes ${sizes}`);
  check((await page.textContent('#platform')).trim() === 'linux/amd64', 'image platform from its config');
  check((await page.textContent('main')).includes('ARCH=amd64'), 'config environment shown');
  await shoot(page, 'image');

  // An action without the CSRF token is refused, and changes nothing.
  const forged = await page.request.post(`${base}/ui/delete-tag`, { form: { name: X.repo, tag: X.deleteTag } });
  check(forged.status() === 403, `delete without CSRF token refused (${forged.status()})`);
  await page.goto(repoUrl);
  check(await page.locator(`tr[data-tag="${X.deleteTag}"]`).count() === 1, 'tag still there after the refused request');

  // Delete a tag with confirmation.
  await page.locator(`tr[data-tag="${X.deleteTag}"]`).getByRole('link', { name: 'Delete tag' }).click();
  check((await page.textContent('h1')).trim() === 'Delete tag', 'confirmation page shown');
  await shoot(page, 'confirm');
  await page.getByRole('button', { name: 'Delete tag' }).click();
  await page.waitForURL(repoUrl);
  check(await page.locator(`tr[data-tag="${X.deleteTag}"]`).count() === 0, 'deleted tag gone from the page');
  check(await page.locator(`tr[data-tag="${X.keepTag}"]`).count() === 1, 'other tag kept');
  const api = await page.request.get(`${base}/v2/${X.repo}/tags/list`, { headers: { Authorization: basic(X.admin) } });
  const tags = (await api.json()).tags;
  check(JSON.stringify(tags) === JSON.stringify([X.keepTag]), `deleted tag gone from the API too: ${tags}`);

  // Delete the signature manifest with confirmation: gone from the index's referrers and the API.
  const sigUrl = `${base}/ui/manifest?name=${encodeURIComponent(X.repo)}&ref=${encodeURIComponent(X.signature)}`;
  await page.goto(sigUrl);
  await page.getByRole('link', { name: /Delete this manifest/ }).click();
  check((await page.textContent('h1')).trim() === 'Delete manifest', 'manifest delete asks for confirmation');
  await page.getByRole('button', { name: 'Delete manifest' }).click();
  await page.waitForURL(repoUrl);
  const refs = await page.request.get(`${base}/v2/${X.repo}/referrers/${X.index}`, { headers: { Authorization: basic(X.admin) } });
  check((await refs.json()).manifests.length === 0, 'deleted signature gone from the referrers API');
  await page.goto(`${base}/ui/manifest?name=${encodeURIComponent(X.repo)}&ref=${encodeURIComponent(X.index)}`);
  check(await page.locator('section.refgroup').count() === 0, 'index page lists no referrer any more');

  // Operations and a GC dry run.
  await page.goto(`${base}/ui/ops`);
  check((await page.textContent('#read-only')).trim() === 'no', 'ops page shows read-only state');
  await shoot(page, 'ops');
  await page.getByRole('button', { name: /Dry run/ }).click();
  check((await page.textContent('h1')).trim() === 'GC dry run', 'GC dry run ran');
  check((await page.textContent('#gc-summary')).includes('would remove'), 'dry run says what it would remove');
  await page.goto(`${base}/ui/ops`);
  check((await page.textContent('#runs')).includes('dry run'), 'dry run listed among the last runs');
  await page.getByRole('link', { name: /Run GC/ }).click();
  check((await page.textContent('h1')).trim() === 'Run GC', 'GC asks for confirmation');
  await page.getByRole('button', { name: 'Run GC' }).click();
  check((await page.textContent('h1')).trim() === 'GC finished', 'GC ran');
  await page.goto(`${base}/ui/ops`);
  check((await page.textContent('#runs')).includes('collection'), 'the run is listed among the last runs');

  // Logout.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(`${base}/ui/login`);
  await page.goto(`${base}/ui/`);
  check(page.url() === `${base}/ui/login`, 'after signing out the UI asks to sign in again');
  await ctx.close();

  // --- a pull-only user ---
  const rctx = await browser.newContext({ viewport: DESKTOP });
  const rpage = await rctx.newPage();
  await login(rpage, X.reader);
  await rpage.goto(repoUrl);
  check(await rpage.locator(`tr[data-tag="${X.keepTag}"]`).count() === 1, 'reader sees the tag');
  check(await rpage.getByRole('link', { name: 'Delete tag' }).count() === 0, 'reader sees no delete button');
  check(await rpage.getByRole('link', { name: 'Operations' }).count() === 0, 'reader sees no operations link');
  check(await rpage.locator(`tr[data-tag="${X.keepTag}"] button.copybtn`).isVisible(), 'with JS a Copy button joins the pull command');
  const csrf = await rpage.locator('form[action="/ui/logout"] input[name=csrf]').inputValue();
  const forgedGet = await rpage.request.get(`${base}/ui/delete-tag?name=${encodeURIComponent(X.repo)}&tag=${X.keepTag}`);
  check(forgedGet.status() === 403, `reader's confirmation page refused (${forgedGet.status()})`);
  const forgedPost = await rpage.request.post(`${base}/ui/delete-tag`, { form: { csrf, name: X.repo, tag: X.keepTag } });
  check(forgedPost.status() === 403, `reader's forged delete with a valid CSRF token refused (${forgedPost.status()})`);
  const forgedGc = await rpage.request.post(`${base}/ui/gc`, { form: { csrf, dry_run: 'false' } });
  check(forgedGc.status() === 403, `reader's forged GC refused (${forgedGc.status()})`);
  const ops = await rpage.request.get(`${base}/ui/ops`);
  check(ops.status() === 403, 'reader may not open operations');
  const still = await rpage.request.get(`${base}/v2/${X.repo}/tags/list`, { headers: { Authorization: basic(X.admin) } });
  check((await still.json()).tags.includes(X.keepTag), 'tag survived the reader');
  await rctx.close();
  console.log(`all ${checks} checks passed`);
} catch (e) {
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
