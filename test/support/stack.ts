/**
 * Reading the deployment files the way Docker, Compose and Prometheus read
 * them: the Dockerfile's stages and instructions, Compose's `${VAR:-default}`
 * interpolation, the metric names in a PromQL expression and in a scrape.
 * Used by test/stack.test.ts and test/docs.test.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ROOT } from './index.js';

export interface Instruction {
  op: string;
  /** The text after the instruction's name, continuation lines joined. */
  text: string;
  /** `--name=value` flags before the arguments (COPY --from=build, HEALTHCHECK --interval=10s). */
  flags: Record<string, string>;
  /** The arguments: the JSON array of the exec form, else split on white space (flags left out). */
  args: string[];
  /** Whether the arguments were written in the exec (JSON array) form. */
  exec: boolean;
}

export interface Stage {
  name: string;
  from: string;
  instructions: Instruction[];
}

/** The stages of a Dockerfile, in order: comments dropped, `\` continuations joined. */
export function parseDockerfile(text: string): Stage[] {
  const lines = text
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const stages: Stage[] = [];
  for (const line of lines) {
    const [, op, rest] = /^(\S+)\s*(.*)$/.exec(line)!;
    const instruction = parseInstruction(op!.toUpperCase(), rest!);
    if (instruction.op === 'FROM') {
      const [from, as, name] = instruction.args;
      stages.push({ name: as?.toUpperCase() === 'AS' ? name! : String(stages.length), from: from!, instructions: [] });
    } else {
      stages.at(-1)!.instructions.push(instruction);
    }
  }
  return stages;
}

function parseInstruction(op: string, text: string): Instruction {
  const flags: Record<string, string> = {};
  let rest = text;
  for (let m; (m = /^--([a-z-]+)=(\S+)\s*/.exec(rest)) !== null; rest = rest.slice(m[0].length)) flags[m[1]!] = m[2]!;
  // HEALTHCHECK's own command is an instruction too: HEALTHCHECK [flags] CMD [...]
  if (op === 'HEALTHCHECK' && rest.startsWith('CMD ')) rest = rest.slice(4).trim();
  if (rest.startsWith('[')) return { op, text, flags, args: JSON.parse(rest) as string[], exec: true };
  return { op, text, flags, args: rest.split(/\s+/).filter((a) => a !== ''), exec: false };
}

/** A stage and the stages it is built FROM, base first (an image that is no stage ends the chain). */
export function stageChain(stages: Stage[], name: string): Stage[] {
  const stage = stages.find((s) => s.name === name);
  if (stage === undefined) return [];
  return [...stageChain(stages, stage.from), stage];
}

/** The instructions of a stage and its bases, in build order. */
export function chainInstructions(stages: Stage[], name: string): Instruction[] {
  return stageChain(stages, name).flatMap((s) => s.instructions);
}

/** The `ENV` of a chain of instructions (`ENV A=1 B=2`; the old `ENV A 1` form too). */
export function imageEnv(instructions: Instruction[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { op, args } of instructions) {
    if (op !== 'ENV') continue;
    if (!args[0]!.includes('=')) env[args[0]!] = args.slice(1).join(' ');
    else for (const pair of args) env[pair.slice(0, pair.indexOf('='))] = pair.slice(pair.indexOf('=') + 1);
  }
  return env;
}

/**
 * Compose's interpolation of one value: `${VAR}`, `${VAR:-default}` (unset or
 * empty), `${VAR-default}` (unset), `$$` for a dollar. `env` stands for the
 * shell and the .env file; the tests pass `{}`, so the defaults apply.
 */
export function interpolate(value: string, env: Record<string, string | undefined> = {}): string {
  return value.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)-([^}]*))?\}/g,
    (whole, name?: string, colon?: string, fallback?: string) => {
      if (whole === '$$') return '$';
      const set = env[name!];
      if (fallback === undefined) return set ?? '';
      return set === undefined || (colon === ':' && set === '') ? fallback : set;
    },
  );
}

export interface ComposeService {
  image?: string;
  build?: string | { context: string; target?: string };
  command?: string[] | string;
  environment?: Record<string, string | number>;
  depends_on?: string[] | Record<string, { condition?: string }>;
  healthcheck?: { test: string[] };
  restart?: string;
  ports?: string[];
  volumes?: string[];
  stop_grace_period?: string;
  hostname?: string;
}

export interface Compose {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

export function readYaml<T>(...path: string[]): T {
  return parseYaml(readFileSync(join(ROOT, ...path), 'utf8')) as T;
}

export function readCompose(): Compose {
  return readYaml<Compose>('docker-compose.yml');
}

/** A service's environment, interpolated with the defaults. */
export function serviceEnv(service: ComposeService): Record<string, string> {
  return Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, interpolate(String(v))]));
}

/** The conditions of a service's `depends_on` (the short form is `service_started`). */
export function dependsOn(service: ComposeService): Record<string, string> {
  const deps = service.depends_on ?? [];
  if (Array.isArray(deps)) return Object.fromEntries(deps.map((d) => [d, 'service_started']));
  return Object.fromEntries(Object.entries(deps).map(([d, c]) => [d, c.condition ?? 'service_started']));
}

/** The container ports a service publishes on the host (`"127.0.0.1:9090:9090"` → 9090). */
export function publishedPorts(service: ComposeService): number[] {
  return (service.ports ?? []).map((p) => Number(String(p).split(':').at(-1)));
}

const PROMQL_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset']);

/** The labels a PromQL expression groups or matches by (`by (a, b)`, `on (c)`), and names in `{…}` selectors. */
export function promqlLabels(expr: string): string[] {
  const labels: string[] = [];
  for (const [, list] of expr.matchAll(/\b(?:by|without|on|ignoring)\s*\(([^)]*)\)/g))
    labels.push(...list!.split(',').map((l) => l.trim()));
  for (const [, body] of expr.matchAll(/\{([^}]*)\}/g))
    labels.push(...[...body!.matchAll(/([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((m) => m[1]!));
  return labels.filter((l) => l !== '');
}

/** The metric names a PromQL expression reads: identifiers that are no function, keyword, label or range. */
export function promqlMetrics(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names: string[] = [];
  for (const m of bare.matchAll(/(?<![\w.$])([A-Za-z_:][\w:]*)(?!\w)(\s*\()?/g)) {
    if (m[2] === undefined && !PROMQL_KEYWORDS.has(m[1]!)) names.push(m[1]!);
  }
  return names;
}

/** The sample names of a Prometheus text scrape (`name{labels} value`), histogram series included. */
export function scrapedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_:][\w:]*)[{ ]/.exec(line);
    if (m !== null) names.add(m[1]!);
  }
  return names;
}

/** The value of one sample of a scrape, by name and exact labels (`{transport="sse"}`); 0 when absent. */
export function sampleValue(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_:][\w:]*)(?:\{([^}]*)\})? (\S+)/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return 0;
}
