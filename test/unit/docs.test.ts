import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { documentedSettings, generatedPart, renderSettingsReference } from '../../scripts/docs-settings.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DOCS = readdirSync(join(ROOT, 'docs'))
  .filter((f) => f.endsWith('.md'))
  .sort()
  .map((f) => join(ROOT, 'docs', f));
const README = join(ROOT, 'README.md');
const PAGES = [README, ...DOCS];
const SETTINGS = documentedSettings();
/** What the page calls a setting: its environment name, or its YAML key for a YAML-only one. */
const nameOf = (s: (typeof SETTINGS)[number]): string => (s.yamlOnly ? s.yaml : s.env);

const read = (file: string): string => readFileSync(file, 'utf8');
const name = (file: string): string => relative(ROOT, file);

/** The page with its fenced code blocks blanked out: no headings or links are read from code. */
function withoutCode(markdown: string): string {
  let fence: string | undefined;
  return markdown
    .split('\n')
    .map((line) => {
      const marker = /^\s*(`{3,}|~{3,})/.exec(line)?.[1];
      if (fence === undefined && marker !== undefined) {
        fence = marker;
        return '';
      }
      if (fence !== undefined) {
        if (line.trim().startsWith(fence)) fence = undefined;
        return '';
      }
      return line;
    })
    .join('\n');
}

/** GitHub's anchor for a heading: lowercase, punctuation removed, spaces to `-`. */
function slug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** The anchors of a page's headings, with GitHub's `-1`, `-2` suffixes for repeated ones. */
function anchors(file: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of withoutCode(read(file)).split('\n')) {
    const m = /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = slug(m[1] as string);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** The targets of the page's Markdown links (inline code and code blocks left out). */
function links(file: string): string[] {
  const text = withoutCode(read(file)).replace(/`[^`]*`/g, 'code');
  return [...text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1] as string);
}

/** Where a relative link points: the file, and the anchor if any; undefined for an external link. */
function target(from: string, link: string): { file: string; anchor?: string } | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(link)) return undefined;
  const [path = '', anchor] = link.split('#', 2);
  const file = path === '' ? from : resolve(dirname(from), decodeURIComponent(path));
  return anchor === undefined ? { file } : { file, anchor };
}

describe('documentation links', () => {
  it('links every docs/ page from the README', () => {
    const linked = new Set(links(README).map((l) => target(README, l)?.file));
    for (const page of DOCS) expect(linked.has(page), name(page)).toBe(true);
  });

  it('links back to the README from the first paragraph of every docs/ page', () => {
    for (const page of DOCS) {
      const [title = '', summary = ''] = read(page).split(/\n\s*\n/);
      const titled = title.startsWith('# ') && !title.includes('\n');
      expect(titled, `${name(page)}: starts with its title`).toBe(true);
      const back = [...summary.matchAll(/\]\(([^)]+)\)/g)].some(
        (m) => target(page, m[1] as string)?.file === README,
      );
      expect(back, `${name(page)}: the summary under the title links to the README`).toBe(true);
    }
  });

  it('points every relative link in the README and docs/ at an existing file and heading', () => {
    const broken: string[] = [];
    for (const page of PAGES) {
      for (const link of links(page)) {
        const to = target(page, link);
        if (to === undefined) continue;
        if (!existsSync(to.file)) broken.push(`${name(page)}: ${link} (no such file)`);
        else if (to.anchor !== undefined && to.file.endsWith('.md') && !anchors(to.file).has(to.anchor)) {
          broken.push(`${name(page)}: ${link} (no such heading in ${name(to.file)})`);
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it('finds headings and links the way GitHub does', () => {
    expect(slug('Validation and `check-config`')).toBe('validation-and-check-config');
    expect(slug('3. Streaming (Streamable HTTP and SSE)')).toBe('3-streaming-streamable-http-and-sse');
    expect(slug('Status: `GET /admin/api/status`')).toBe('status-get-adminapistatus');
    expect(withoutCode('a\n```bash\n# not a heading [x](nowhere.md)\n```\nb')).toBe('a\n\n\n\nb');
  });
});

describe('docs/configuration.md', () => {
  const page = read(join(ROOT, 'docs/configuration.md'));

  it('holds the settings reference generated from the settings table (npm run docs:settings)', () => {
    expect(generatedPart(page)).toBe(renderSettingsReference(SETTINGS));
  });

  it('documents every setting of the table in the reference, and nothing else', () => {
    const rows = [...(generatedPart(page) ?? '').matchAll(/^\| `([A-Za-z0-9_]+)` \|/gm)].map((m) => m[1]);
    expect(rows).toEqual(SETTINGS.map(nameOf));
  });

  it('names each reloadable setting in "Reloading", and every other one by name or prefix', () => {
    const section = /\n## Reloading\n([\s\S]*?)(?=\n## |$)/.exec(page)?.[1] ?? '';
    const applied = /\*\*Applied at once:\*\*([\s\S]*?)\n- \*\*Need a restart\*\*/.exec(section)?.[1] ?? '';
    const restart = /\*\*Need a restart\*\*([\s\S]*?)\n\n/.exec(section)?.[1] ?? '';
    const named = (text: string, key: string): boolean =>
      text.includes(`\`${key}\``) || text.includes(`\`${key.split('_')[0]}_*\``);
    const reloadable = SETTINGS.filter((s) => s.reloadable).map(nameOf);
    const restartOnly = SETTINGS.filter((s) => !s.reloadable).map(nameOf);
    expect(reloadable.length).toBeGreaterThan(0);
    for (const key of reloadable) expect(applied.includes(`\`${key}\``), key).toBe(true);
    for (const key of restartOnly) {
      expect(named(restart, key), key).toBe(true);
      expect(applied.includes(`\`${key}\``), key).toBe(false);
    }
  });
});

describe('README.md', () => {
  it('names only real settings in its table of common settings', () => {
    const envs = new Set(SETTINGS.map((s) => s.env));
    const table = /\n## Common settings\n([\s\S]*?)(?=\n## |$)/.exec(read(README))?.[1] ?? '';
    const named = table
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .flatMap((line) => [...(line.split(' | ')[0] ?? '').matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]));
    expect(named.length).toBeGreaterThan(10);
    for (const env of named) expect(envs.has(env as string), env).toBe(true);
  });
});
