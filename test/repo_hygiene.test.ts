/**
 * The repository tracks no leftovers of merges and patches: a tracked *.orig or *.rej file would
 * ship in the npm package (package.json "files" takes whole folders, such as native/) and be read
 * as source. Runs on the git checkout (CI and development); outside one it fails, naming why.
 */
import { execFileSync } from 'child_process';
import * as path from 'path';

const root = path.join(__dirname, '..');

/** The paths among `files` that are merge or patch leftovers. */
function leftovers(files: string[]): string[] {
  return files.filter((f) => /\.(orig|rej)$/.test(f));
}

test('leftovers() finds *.orig and *.rej files, and only those', () => {
  expect(leftovers(['native/engine/model.cc.orig', 'lib/a.ts.rej', 'lib/orig.ts', 'native/rej/x.cc', 'a.origin'])).toEqual([
    'native/engine/model.cc.orig',
    'lib/a.ts.rej',
  ]);
});

test('no tracked *.orig or *.rej file', () => {
  let listed: string;
  try {
    listed = execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  } catch (e) {
    throw new Error(`repo_hygiene needs a git checkout with git on PATH: git ls-files failed in ${root}: ${String(e)}`, {
      cause: e,
    });
  }
  const files = listed.split('\0').filter(Boolean);
  expect(files.length).toBeGreaterThan(100); // the listing really is the repository's
  expect(leftovers(files)).toEqual([]);
});
